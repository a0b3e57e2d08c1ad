"""The bittensor ``Substrate`` protocol over the devnet file (``bt.Client(substrate=...)``).

Strict: a storage item, map, runtime API, constant or call the devnet does not model raises
``DevnetChainError`` naming it, so an SDK upgrade that reads something new fails loudly.
Every method appends to ``trace`` (method, item) so tests can pin which chain surface each
SDK path uses. State is served at the head for every block hash (no historical state).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from bittensor.balance import Balance

from subnet.chain.devnet import calls, extrinsics
from subnet.chain.devnet.clock import block_hash, block_of, timestamp_ms
from subnet.chain.devnet.errors import DevnetChainError, DevnetUnavailable
from subnet.chain.devnet.extrinsics import SHIELD, Composed, PoolRejection
from subnet.chain.devnet.pallet import DispatchError
from subnet.chain.devnet.reads import MAPS, STORAGE, Ctx, next_key
from subnet.chain.devnet.runtime import RUNTIME
from subnet.errors import StateError

if TYPE_CHECKING:
    from subnet.chain.devnet.net import Devnet

T = TypeVar("T")
DEFAULT_PERIOD = 128


class DevnetSubstrate:
    """One process's view of a devnet; cheap, create one per ``bt.Client``."""

    def __init__(self, net: Devnet) -> None:
        self._net = net
        self.token_symbols: dict[int, str] = {}
        self.trace: list[tuple[str, str]] = []

    def _record(self, method: str, item: str = "") -> None:
        self.trace.append((method, item))

    def balance(self, rao: int, netuid: int = 0) -> Balance:
        symbol = self.token_symbols.get(netuid) if netuid else None
        return Balance(int(rao), netuid, symbol)

    # --- plumbing -------------------------------------------------------------------------

    def _read(self, fn: Callable[[Ctx], T], at: str | None = None) -> T:
        """Catch up the clock, then run ``fn`` on one consistent snapshot."""
        try:
            head = self._net.touch()
            with self._net.store.read() as db:
                if at is not None and (block_of(self._net.chain_id, at) or 0) > head:
                    raise DevnetChainError(f"unknown block hash {at}", "UnknownBlock")
                if at is not None and block_of(self._net.chain_id, at) is None:
                    raise DevnetChainError(f"unknown block hash {at}", "UnknownBlock")
                return fn(Ctx(db, head))
        except DispatchError as e:
            raise DevnetChainError(e.docs, e.name) from e
        except (StateError, sqlite3.Error) as e:
            raise DevnetUnavailable(f"devnet state unavailable: {e}") from e

    @staticmethod
    def _lookup(table: dict[tuple[str, str], Any], kind: str, module: str, name: str) -> Any:
        fn = table.get((module, name))
        if fn is None:
            raise DevnetChainError(
                f"the devnet does not model {kind} {module}.{name}", f"{module}.{name}"
            )
        return fn

    # --- lifecycle ------------------------------------------------------------------------

    async def connect(self) -> None:
        self._record("connect")

    async def close(self) -> None:
        self._record("close")

    # --- blocks ---------------------------------------------------------------------------

    async def block_hash(self, block: int | None = None) -> str | None:
        self._record("block_hash")
        head = self._read(lambda ctx: ctx.head)
        number = head if block is None else int(block)
        return block_hash(self._net.chain_id, number) if 0 <= number <= head else None

    async def block_number(self) -> int:
        self._record("block_number")
        return self._read(lambda ctx: ctx.head)

    async def finalized_block_number(self) -> int:
        self._record("finalized_block_number")
        return self._read(lambda ctx: ctx.head)  # instant finality

    async def block_time(self) -> float:
        self._record("block_time")
        return self._net.block_time

    async def spec_version(self) -> int:
        raise DevnetChainError("the devnet has no runtime version", "spec_version")

    def _header(self, number: int) -> dict[str, Any]:
        chain = self._net.chain_id
        zero = "0x" + "00" * 32
        return {
            "number": number,
            "hash": block_hash(chain, number),
            "parentHash": block_hash(chain, number - 1) if number > 0 else zero,
            "stateRoot": zero,
            "extrinsicsRoot": zero,
            "digest": {"logs": []},
        }

    async def get_block(
        self, block_number: int | None = None, block_hash: str | None = None
    ) -> dict[str, Any] | None:
        self._record("get_block")

        def read(ctx: Ctx) -> dict[str, Any] | None:
            number = ctx.head if block_number is None else int(block_number)
            if block_hash is not None:
                found = block_of(self._net.chain_id, block_hash)
                if found is None:
                    return None
                number = found
            if not 0 <= number <= ctx.head:
                return None
            stamp = {
                "call": {
                    "call_module": "Timestamp",
                    "call_function": "set",
                    "call_args": [{"name": "now", "value": timestamp_ms(ctx.db, number)}],
                }
            }
            return {
                "header": self._header(number),
                "extrinsics": [stamp, *extrinsics.block_extrinsics(ctx.db, number)],
            }

        return self._read(read)

    async def blocks(self, *, finalized: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Never ends: polls the head with ``asyncio.sleep`` (works on any loop or thread)."""
        self._record("blocks")
        interval = min(max(self._net.block_time / 4, 0.01), 0.5)
        last: int | None = None
        while True:
            head = self._read(lambda ctx: ctx.head)
            if last is not None and head <= last:
                await asyncio.sleep(interval)
                continue
            start = head if last is None else max(last + 1, head - 64)
            for number in range(start, head + 1):
                yield {"header": self._header(number)}
            last = head

    async def events(self, block_hash: str | None = None) -> list[dict[str, Any]]:
        self._record("events")

        def read(ctx: Ctx) -> list[dict[str, Any]]:
            number = ctx.head if block_hash is None else block_of(self._net.chain_id, block_hash)
            if number is None:
                raise DevnetChainError(f"unknown block hash {block_hash}", "UnknownBlock")
            out: list[dict[str, Any]] = []
            for r in ctx.db.execute(
                "SELECT events FROM extrinsics WHERE block=? ORDER BY idx", (number,)
            ):
                out += json.loads(r[0])
            return out

        return self._read(read)

    # --- storage --------------------------------------------------------------------------

    async def query(
        self,
        module: str,
        storage_function: str,
        params: list[Any] | None = None,
        block_hash: str | None = None,
    ) -> Any:
        self._record("query", f"{module}.{storage_function}")
        fn = self._lookup(STORAGE, "storage item", module, storage_function)
        return self._read(lambda ctx: fn(ctx, list(params or [])), block_hash)

    async def map_has_entries(
        self, module: str, storage_function: str, params: list[Any], block_hash: str | None = None
    ) -> bool:
        self._record("map_has_entries", f"{module}.{storage_function}")
        fn = self._lookup(MAPS, "storage map", module, storage_function)
        return bool(self._read(lambda ctx: fn(ctx, list(params or [])), block_hash))

    async def query_map(
        self,
        module: str,
        storage_function: str,
        params: list[Any] | None = None,
        block_hash: str | None = None,
    ) -> list[tuple[Any, Any]]:
        self._record("query_map", f"{module}.{storage_function}")
        fn = self._lookup(MAPS, "storage map", module, storage_function)
        return list(self._read(lambda ctx: fn(ctx, list(params or [])), block_hash))

    async def query_batch(
        self,
        module: str,
        storage_function: str,
        param_sets: list[list[Any]],
        block_hash: str | None = None,
    ) -> list[Any]:
        self._record("query_batch", f"{module}.{storage_function}")
        fn = self._lookup(STORAGE, "storage item", module, storage_function)
        return self._read(lambda ctx: [fn(ctx, list(p)) for p in param_sets], block_hash)

    async def runtime_call(
        self, api: str, method: str, params: list[Any], block_hash: str | None = None
    ) -> Any:
        self._record("runtime_call", f"{api}.{method}")
        fn = self._lookup(RUNTIME, "runtime API", api, method)
        return self._read(lambda ctx: fn(ctx, list(params or [])), block_hash)

    async def constant(self, module: str, name: str) -> Any:
        self._record("constant", f"{module}.{name}")
        if (module, name) == ("Aura", "SlotDuration"):
            return round(self._net.block_time * 1000)
        raise DevnetChainError(
            f"the devnet does not model constant {module}.{name}", f"{module}.{name}"
        )

    async def decode_scale(self, type_string: str, data: Any) -> Any:
        raise DevnetChainError("the devnet has no SCALE codec", "decode_scale")

    # --- calls ----------------------------------------------------------------------------

    async def compose(self, call: Any) -> Composed:
        if isinstance(call, Composed):
            return call
        module, function, params = call
        self._record("compose", f"{module}.{function}")
        shield = (module, function) == SHIELD and self._net.mev_shield
        if not (calls.known(module, function) or shield):
            raise DevnetChainError(
                f"the devnet does not model call {module}.{function}", f"{module}.{function}"
            )
        return Composed(module, function, dict(params))

    async def estimate_fee(self, call: Any, keypair: Any) -> Balance:
        self._record("estimate_fee")
        return Balance.from_rao(0)  # fees are not modelled

    async def estimate_weight(self, call: Any, keypair: Any) -> dict[str, Any]:
        self._record("estimate_weight")
        return {"ref_time": 0, "proof_size": 0}

    async def account_next_index(self, address: str) -> int:
        self._record("account_next_index")
        return self._nonce(address)

    def _nonce(self, address: str) -> int:
        return int(self._read(lambda ctx: STORAGE[("System", "Account")](ctx, [address]))["nonce"])

    async def mev_next_key(self) -> bytes | None:
        self._record("mev_next_key")
        return self._read(lambda ctx: next_key(ctx, []))

    async def sign_extrinsic(
        self, call: Any, keypair: Any, *, nonce: int, period: int
    ) -> tuple[bytes, str]:
        """Sign without submitting; the devnet keeps it for the shield carrier that follows."""
        self._record("sign_extrinsic")
        composed = await self.compose(call)
        raw = await extrinsics.sign(self._net.chain_id, composed, keypair, nonce, period)
        hash_ = extrinsics.extrinsic_hash(raw)
        with self._net.store.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO inner_pool VALUES (?, ?, ?, ?)",
                (hash_, keypair.ss58_address, int(nonce), raw.hex()),
            )
        return raw, hash_

    async def find_extrinsic(self, extrinsic_hash: str, block_hash: str) -> Any:
        self._record("find_extrinsic")
        number = block_of(self._net.chain_id, block_hash)
        if number is None:
            return None
        return self._read(
            lambda ctx: extrinsics.receipt(ctx.db, self._net.chain_id, extrinsic_hash, number)
        )

    async def submit(
        self,
        call: Any,
        keypair: Any,
        *,
        nonce: int | None = None,
        period: int | None = DEFAULT_PERIOD,
        wait_for_inclusion: bool = True,
        wait_for_finalization: bool = True,
    ) -> Any:
        from bittensor.result import ExtrinsicResult

        self._record("submit")
        composed = await self.compose(call)
        if nonce is None:
            nonce = self._nonce(keypair.ss58_address)
        raw = await extrinsics.sign(
            self._net.chain_id, composed, keypair, nonce, period or DEFAULT_PERIOD
        )
        try:
            head = self._net.touch()
            with self._net.store.tx() as db:
                hashes = extrinsics.include(db, self._net.chain_id, raw, head)
            with self._net.store.read() as db:
                result = extrinsics.receipt(db, self._net.chain_id, hashes[0])
        except PoolRejection as e:
            return ExtrinsicResult(
                success=False, message=str(e), error=DevnetChainError(str(e), "InvalidTransaction")
            )
        except (StateError, sqlite3.Error) as e:
            raise DevnetUnavailable(f"devnet state unavailable: {e}") from e
        if not (wait_for_inclusion or wait_for_finalization):
            return ExtrinsicResult(success=True, message="Submitted (not waiting).")
        return result

    # --- not modelled: out-of-process signing and multisig ---------------------------------

    def _unmodelled(self, what: str) -> DevnetChainError:
        return DevnetChainError(f"the devnet does not model {what}", what)

    async def prepare(self, call: Any, **kwargs: Any) -> Any:
        raise self._unmodelled("prepare")

    async def submit_signature(self, unsigned: Any, signature: Any, **kwargs: Any) -> Any:
        raise self._unmodelled("submit_signature")

    async def submit_signed(self, extrinsic: Any, keypair: Any, **kwargs: Any) -> Any:
        raise self._unmodelled("submit_signed")

    def multisig_account(self, signatories: list[str], threshold: int) -> Any:
        raise self._unmodelled("multisig_account")

    async def submit_multisig(
        self, call: Any, keypair: Any, multisig_account: Any, **kwargs: Any
    ) -> Any:
        raise self._unmodelled("submit_multisig")
