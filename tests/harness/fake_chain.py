"""``FakeChain``: an in-memory ``subnet.chain.protocol.Chain`` for unit tests.

State is plain fields a test sets directly (``head``, ``mg``, ``commitments``); every call
is recorded in ``calls`` as ``(method, args)``; ``fail(method, *errors)`` makes the next
calls of ``method`` raise those errors in order, after which it works again. Writes apply to
the in-memory state the way the chain would (a registered hotkey gets the next uid, weights
are held as sent), so a test reads back what it did. ``wait_for_block`` never waits: the fake
has no clock, so waiting for a block *is* producing it.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from subnet.chain.types import Axon, Commitment, MetagraphView, NeuronView, WeightsResult
from subnet.wallets import hotkey_address

if TYPE_CHECKING:
    from subnet.chain.protocol import Chain

U16_MAX = 65535


def neuron(uid: int, hotkey: str, **fields: Any) -> NeuronView:
    """A metagraph row with neutral defaults; ``fields`` override any of them."""
    values: dict[str, Any] = {
        "uid": uid,
        "hotkey": hotkey,
        "coldkey": f"cold-{hotkey}",
        "stake": 0.0,
        "stake_rao": 0,
        "validator_permit": False,
        "axon": None,
        "incentive": 0.0,
        "dividends": 0.0,
        "emission": 0.0,
        "emission_rao": 0,
        "trust": 0.0,
        "consensus": 0.0,
        "last_update": 0,
        "block_at_registration": 0,
        "active": True,
    }
    values.update(fields)
    return NeuronView(**values)


def metagraph(
    *hotkeys: str,
    netuid: int = 1,
    block: int = 0,
    tempo: int = 10,
    permits: tuple[str, ...] = (),
) -> MetagraphView:
    """A metagraph of ``hotkeys`` in uid order; the first one owns the subnet; the hotkeys in
    ``permits`` hold a validator permit."""
    owner = hotkeys[0] if hotkeys else ""
    return MetagraphView(
        netuid=netuid,
        block=block,
        tempo=tempo,
        owner_hotkey=owner,
        owner_coldkey=f"cold-{owner}",
        neurons=tuple(neuron(u, h, validator_permit=h in permits) for u, h in enumerate(hotkeys)),
    )


class FakeChain:
    """One subnet in memory; see the module docstring."""

    def __init__(
        self,
        mg: MetagraphView | None = None,
        *,
        head: int = 100,
        network: str = "fake",
        tempo: int = 10,
        weights_rate_limit: int = 0,
    ) -> None:
        self.mg = mg if mg is not None else metagraph("owner")
        self.head = head
        self.network = network
        self.tempo_blocks = tempo
        self.rate_limit = weights_rate_limit
        self.commitments: dict[str, Commitment] = {}
        self.weights: dict[int, dict[int, int]] = {}  # setter uid -> the u16 row it set
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._failures: dict[str, list[BaseException]] = defaultdict(list)

    # -- test controls --------------------------------------------------------------------

    def fail(self, method: str, *errors: BaseException) -> None:
        """The next ``len(errors)`` calls of ``method`` raise these, in order."""
        if not callable(getattr(self, method, None)):
            raise AttributeError(f"FakeChain has no method {method!r}")
        self._failures[method].extend(errors)

    def called(self, method: str) -> list[tuple[Any, ...]]:
        """The arguments of every call of ``method``, in order."""
        return [args for name, args in self.calls if name == method]

    def _enter(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        queue = self._failures[method]
        if queue:
            raise queue.pop(0)

    # -- blocks ---------------------------------------------------------------------------

    async def block(self) -> int:
        self._enter("block")
        return self.head

    async def block_hash(self, block: int) -> str | None:
        self._enter("block_hash", block)
        return f"0x{block:064x}" if block <= self.head else None

    async def wait_for_block(
        self, block: int | None = None, *, timeout: float | None = None
    ) -> int:
        self._enter("wait_for_block", block)
        self.head = max(self.head, self.head + 1 if block is None else block)
        return self.head

    # -- subnet parameters ----------------------------------------------------------------

    async def tempo(self, netuid: int) -> int:
        self._enter("tempo", netuid)
        return self.tempo_blocks

    async def weights_rate_limit(self, netuid: int) -> int:
        self._enter("weights_rate_limit", netuid)
        return self.rate_limit

    # -- neurons --------------------------------------------------------------------------

    async def metagraph(self, netuid: int, *, max_age_blocks: int = 1) -> MetagraphView:
        self._enter("metagraph", netuid, max_age_blocks)
        return dataclasses.replace(self.mg, block=self.head)

    async def identities(self, netuid: int) -> dict[str, Commitment]:
        self._enter("identities", netuid)
        return dict(self.commitments)

    async def is_registered(self, netuid: int, hotkey_ss58: str) -> int | None:
        self._enter("is_registered", netuid, hotkey_ss58)
        found = self.mg.by_hotkey(hotkey_ss58)
        return None if found is None else found.uid

    async def register(self, netuid: int, wallet: Any) -> int:
        hotkey = hotkey_address(wallet)
        self._enter("register", netuid, hotkey)
        found = self.mg.by_hotkey(hotkey)
        if found is not None:
            return found.uid
        uid = len(self.mg.neurons)
        row = neuron(uid, hotkey, block_at_registration=self.head)
        self.mg = dataclasses.replace(self.mg, neurons=(*self.mg.neurons, row))
        return uid

    async def serve(self, netuid: int, wallet: Any, ip: str, port: int) -> None:
        hotkey = hotkey_address(wallet)
        self._enter("serve", netuid, hotkey, ip, port)
        self._update(hotkey, axon=Axon(ip, port))

    async def commit_identity(self, netuid: int, wallet: Any, payload: str) -> None:
        hotkey = hotkey_address(wallet)
        self._enter("commit_identity", netuid, hotkey, payload)
        self.commitments[hotkey] = Commitment(payload, self.head)

    # -- weights --------------------------------------------------------------------------

    async def set_weights(
        self, netuid: int, wallet: Any, weights: dict[int, float], version_key: int = 0
    ) -> WeightsResult:
        hotkey = hotkey_address(wallet)
        self._enter("set_weights", netuid, hotkey, dict(weights))
        top = max(weights.values())
        sent = {u: round(w / top * U16_MAX) for u, w in sorted(weights.items()) if w > 0}
        me = self.mg.by_hotkey(hotkey)
        if me is not None:
            self.weights[me.uid] = sent
        total = sum(sent.values())
        read_back = {u: v / total for u, v in sent.items()}
        return WeightsResult(True, self.head, "plaintext", True, sent, read_back)

    async def weight_rows(self, netuid: int) -> dict[int, dict[int, float]]:
        self._enter("weight_rows", netuid)
        return {
            uid: {u: v / sum(row.values()) for u, v in row.items()}
            for uid, row in self.weights.items()
            if row and sum(row.values()) > 0
        }

    def _update(self, hotkey: str, **fields: Any) -> None:
        rows = tuple(
            dataclasses.replace(n, **fields) if n.hotkey == hotkey else n for n in self.mg.neurons
        )
        self.mg = dataclasses.replace(self.mg, neurons=rows)


if TYPE_CHECKING:
    _implements_the_seam: type[Chain] = FakeChain
