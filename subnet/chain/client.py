"""``ChainClient``: the only place neurons touch the chain.

It wraps an open ``bittensor.Client`` (a real node, or the devnet's ``Substrate`` injected into
the same client) and speaks in our own frozen types (``subnet.chain.types``). Every failure
comes out as ``subnet.errors.ChainError`` whose ``name`` is the pallet error
(``SettingWeightsTooFast``, ``InvalidIpAddress``, ``BadOrigin``...) or the SDK's preflight
code (``RATE_LIMITED``, ``NOT_REGISTERED``, ``INVALID_ARGUMENT``...): the SDK reports some
failures by raising and others by returning ``success=False``, and callers should not have to
know which; a lost connection or timeout is ``ChainConnectionError``. Obtain one with
``subnet.chain.network.open_chain(network)``. It implements ``subnet.chain.protocol.Chain``,
the seam neurons are typed against (checked by mypy at the bottom of this module).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import bittensor as bt
from bittensor.intents.weights import clip_to_max_weight, normalize

from subnet.chain import hparams
from subnet.chain.convert import (
    check_result,
    commitment_fields,
    metagraph_view,
    result_block,
    translated,
)
from subnet.chain.types import Commitment, MetagraphView, WeightsResult
from subnet.errors import ChainError
from subnet.wallets import hotkey_address

if TYPE_CHECKING:
    from subnet.chain.protocol import Chain

U16_MAX = 65535


class ChainClient:
    """Async adapter over one connected ``bittensor.Client``."""

    def __init__(self, client: bt.Client, *, network: str = "") -> None:
        self._client = client
        self.network = network
        self._metagraphs: dict[int, MetagraphView] = {}

    # -- blocks and time ------------------------------------------------------------------

    async def block(self) -> int:
        with translated("read block"):
            return int(await self._client.block())

    async def block_time(self) -> float:
        """Seconds per block as the chain reports it (12 on finney, 0.25 on fast chains)."""
        with translated("read block time"):
            return float(await self._client.block_time())

    async def block_hash(self, block: int) -> str | None:
        """The hash of ``block`` (None if the chain does not have it yet).

        Validators seed their tasks from it, so every validator of a subnet draws the same
        prompts for the same block and nobody can precompute them.
        """
        with translated(f"read block {block}"):
            info = await self._client.block_info(block)
            return None if info is None or not info.hash else str(info.hash)

    async def wait_for_block(
        self, block: int | None = None, *, timeout: float | None = None
    ) -> int:
        """Wait until the head reaches ``block`` (default: the next one); returns the head."""
        with translated("wait for block"):
            header = await self._client.wait_for_block(block, timeout=timeout)
            return int(header.number)

    async def wait_for_epoch(self, netuid: int, *, timeout: float | None = None) -> int:
        """Wait until the subnet's next epoch has run; returns the block it ran at."""
        with translated(f"wait for epoch on netuid {netuid}"):
            event = await self._client.wait_for_epoch(netuid, timeout=timeout)
            return int(event.block)

    async def tempo(self, netuid: int) -> int:
        with translated("read tempo"):
            return int(await self._client.query(("SubtensorModule", "Tempo"), [netuid]) or 0)

    async def weights_rate_limit(self, netuid: int) -> int:
        with translated("read weights_rate_limit"):
            return int(await self._client.read("weights_rate_limit", netuid=netuid) or 0)

    # -- neurons --------------------------------------------------------------------------

    async def metagraph(self, netuid: int, *, max_age_blocks: int = 1) -> MetagraphView:
        """The subnet's neurons; reused while fewer than ``max_age_blocks`` blocks passed."""
        head = await self.block()
        cached = self._metagraphs.get(netuid)
        if cached is not None and head - cached.block < max_age_blocks:
            return cached
        with translated(f"read metagraph of netuid {netuid}"):
            mg = await self._client.subnets.metagraph(netuid, commitments=False)
        if mg is None:
            raise ChainError(f"subnet {netuid} does not exist", name="SUBNET_NOT_EXISTS")
        view = metagraph_view(mg)
        self._metagraphs[netuid] = view
        return view

    async def is_registered(self, netuid: int, hotkey_ss58: str) -> int | None:
        """The hotkey's uid on the subnet, or None."""
        with translated("read uid"):
            uid = await self._client.read("uid", hotkey_ss58=hotkey_ss58, netuid=netuid)
        return None if uid is None else int(uid)

    async def register(self, netuid: int, wallet: bt.WalletLike) -> int:
        """Register the wallet's hotkey (coldkey pays the burn); returns its uid.

        Idempotent: an already registered hotkey returns its uid without a transaction. Uses
        the MEV-shielded intent where the chain publishes ``MevShield.NextKey`` and the plain
        ``burned_register`` call where it does not (localnets, the devnet without a shield).
        """
        hotkey = hotkey_address(wallet)
        uid = await self.is_registered(netuid, hotkey)
        if uid is not None:
            return uid
        what = f"register {hotkey} on netuid {netuid}"
        with translated(what):
            if await self._client.read("mev_shield_next_key"):
                intent = bt.BurnedRegister(netuid=netuid, hotkey_ss58=hotkey)
                result = await self._client.execute(intent, wallet)
            else:
                call = bt.calls.SubtensorModule.burned_register(netuid=netuid, hotkey=hotkey)
                result = await self._client.submit_call(call, wallet)
        check_result(result, what)
        self._metagraphs.pop(netuid, None)
        uid = await self.is_registered(netuid, hotkey)
        if uid is None:
            raise ChainError(f"{what}: included but no uid assigned", name="NOT_REGISTERED")
        return uid

    async def serve(self, netuid: int, wallet: bt.WalletLike, ip: str, port: int) -> None:
        """Publish the hotkey's endpoint. The chain rejects 127.0.0.1 and ::1 (use 127.0.0.2)."""
        what = f"serve {ip}:{port} on netuid {netuid}"
        with translated(what):
            intent = bt.ServeAxon(netuid=netuid, ip=ip, port=port, protocol=4, version=1)
            result = await self._client.execute(intent, wallet)
        check_result(result, what)
        self._metagraphs.pop(netuid, None)

    # -- model identity (Commitments pallet) ----------------------------------------------

    async def commit_identity(self, netuid: int, wallet: bt.WalletLike, payload: str) -> None:
        """Publish ``payload`` (<= 384 utf-8 bytes) as the hotkey's plaintext commitment."""
        what = f"commit identity on netuid {netuid}"
        info = commitment_fields(payload)
        with translated(what):
            call = bt.calls.Commitments.set_commitment(netuid=netuid, info=info)
            result = await self._client.submit_call(call, wallet, signer="hotkey")
        check_result(result, what)

    async def identities(self, netuid: int) -> dict[str, Commitment]:
        """hotkey -> its current plaintext commitment (sealed or empty ones are left out)."""
        with translated(f"read commitments of netuid {netuid}"):
            rows = await self._client.read("commitments", netuid=netuid)
        out: dict[str, Commitment] = {}
        for row in rows:
            text = row.get("commitment")
            if text:
                out[str(row["hotkey"])] = Commitment(payload=str(text), block=int(row["block"]))
        return out

    # -- weights --------------------------------------------------------------------------

    async def set_weights(
        self, netuid: int, wallet: bt.WalletLike, weights: dict[int, float], version_key: int = 0
    ) -> WeightsResult:
        """Set the wallet hotkey's weights (plaintext or timelocked, as the subnet runs).

        Raises ChainError on both channels: preflight (``RATE_LIMITED``, ``NOT_REGISTERED``,
        ``INVALID_ARGUMENT``) and chain (``SettingWeightsTooFast``,
        ``NeuronNoValidatorPermit``, ``IncorrectWeightVersionKey``...). On success the row
        is read back and compared with what was sent (see ``WeightsResult.matches``).
        """
        what = f"set weights on netuid {netuid}"
        if not weights or not any(math.isfinite(w) and w > 0 for w in weights.values()):
            raise ChainError(f"{what}: no positive weight to set", name="INVALID_ARGUMENT")
        with translated(what):
            intent = bt.SetWeights(netuid=netuid, weights=dict(weights), version_key=version_key)
            result = await self._client.execute(intent, wallet)
        check_result(result, what)
        self._metagraphs.pop(netuid, None)
        reveal_round = result.data.get("reveal_round")
        block = result_block(result)
        hotkey = hotkey_address(wallet)
        uid = await self.is_registered(netuid, hotkey)
        sent = await self._expected_row(netuid, uid, weights)
        if reveal_round is not None:
            return WeightsResult(
                success=True,
                block=block,
                path="commit_reveal",
                matches=None,
                sent=sent,
                reveal_round=int(reveal_round),
                message=result.message,
            )
        with translated(f"read back weights on netuid {netuid}"):
            rows = await self._client.read("weights", netuid=netuid)
        read_back = {int(k): float(v) for k, v in (rows.get(uid) or {}).items()}
        return WeightsResult(
            success=True,
            block=block,
            path="plaintext",
            matches=_rows_match(sent, read_back),
            sent=sent,
            read_back=read_back,
            message=result.message,
        )

    async def weight_rows(self, netuid: int) -> dict[int, dict[int, float]]:
        """Every uid's weights in force on chain: setter uid -> {uid: fraction of its row}.

        What any observer of a plaintext subnet can read (and copy); empty rows are left out.
        Under commit-reveal a row changes only when the chain reveals a commit.
        """
        with translated(f"read weights on netuid {netuid}"):
            rows = await self._client.read("weights", netuid=netuid)
        return {
            int(uid): {int(k): float(v) for k, v in row.items()}
            for uid, row in (rows or {}).items()
            if row
        }

    async def _expected_row(
        self, netuid: int, uid: int | None, weights: dict[int, float]
    ) -> dict[int, int]:
        """The u16 row the SDK submitted, recomputed with the SDK's own clip and normalize."""
        uids = sorted(int(u) for u in weights)
        floats = [float(weights[u]) for u in uids]
        with translated("read max_weight_limit"):
            limit = int(await self._client.read("max_weight_limit", netuid=netuid) or U16_MAX)
        if uids != [uid] and limit < U16_MAX:
            floats = clip_to_max_weight(floats, limit / U16_MAX)
        out_uids, values = normalize(uids, floats)
        return dict(zip(out_uids, values, strict=True))

    # -- hyperparameters ------------------------------------------------------------------

    async def hyperparameters(self, netuid: int) -> dict[str, int | bool | float]:
        """Every hyperparameter the runtime lists, as raw on-chain values."""
        with translated(f"read hyperparameters of netuid {netuid}"):
            values = await self._client.read("subnet_hyperparameters", netuid=netuid)
        if values is None:
            raise ChainError(f"subnet {netuid} does not exist", name="SUBNET_NOT_EXISTS")
        return {str(k): hparams.plain(v) for k, v in values.items()}

    async def set_hyperparameter(
        self,
        netuid: int,
        wallet: bt.WalletLike,
        name: str,
        value: int | bool | float | str,
        *,
        sudo: bool = False,
    ) -> None:
        """Set one hyperparameter: owner-settable names through the SDK's owner intent (signed
        by the subnet owner's coldkey); root-only names, or any name with ``sudo=True``,
        wrapped in ``Sudo.sudo`` (the wallet must be the chain's sudo key, else the chain
        answers ``RequireSudo``). Sudo may go outside the owner's bounds (tempo < 360)."""
        what = f"set {name}={value} on netuid {netuid}"
        with translated(what):
            if hparams.is_owner_settable(name) and not sudo:
                intent = bt.SetHyperparameter(netuid=netuid, name=name, value=value)
                result = await self._client.execute(intent, wallet)
            else:
                inner = await self._client.compose(  # type: ignore[no-untyped-call]
                    hparams.root_call(netuid, name, value)
                )
                result = await self._client.submit_call(bt.calls.Sudo.sudo(call=inner), wallet)
        check_result(result, what)


def _rows_match(sent: dict[int, int], read_back: dict[int, float]) -> bool:
    """Same uids and the same fractions within one u16 step (the chain may re-upscale)."""
    total = sum(sent.values())
    if total == 0 or set(sent) != set(read_back):
        return False
    return all(abs(sent[u] / total - read_back[u]) <= 1 / U16_MAX for u in sent)


if TYPE_CHECKING:
    _implements_the_seam: type[Chain] = ChainClient
