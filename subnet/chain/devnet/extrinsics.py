"""Signed extrinsics: composition, signing, verification, inclusion and receipts.

The devnet has no SCALE: a composed call is a ``Composed`` value and an extrinsic is the
canonical JSON of (chain, signer, nonce, era, call) plus a real signature over those bytes,
checked with ``bittensor.sp_core.verify``. A bad signature or nonce is a pool rejection (not
included, nonce unchanged); a refused dispatch is included as failed and consumes the nonce,
exactly the two outcomes a node gives.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from bittensor import sp_core

from subnet.chain.devnet import calls, pallet
from subnet.chain.devnet.clock import block_hash
from subnet.chain.devnet.pallet import DispatchError

SHIELD = ("MevShield", "submit_encrypted")


class PoolRejection(Exception):
    """The transaction pool refused the extrinsic (never included)."""


@dataclass(frozen=True)
class Composed:
    """A chain-ready call: ``.data`` marks it composed for the SDK's Sudo/Proxy nesting."""

    module: str
    function: str
    params: dict[str, Any]

    @property
    def call_module(self) -> str:
        return self.module

    @property
    def call_function(self) -> str:
        return self.function

    @property
    def call_args(self) -> dict[str, Any]:
        return self.params

    @property
    def data(self) -> bytes:
        return canonical(self)

    def __iter__(self) -> Any:  # unpacks like the generated ``Call`` NamedTuple
        return iter((self.module, self.function, self.params))


def to_json(value: Any) -> Any:
    if isinstance(value, Composed):
        return {"__call__": [value.module, value.function, to_json(value.params)]}
    if isinstance(value, bytes | bytearray):
        return {"__bytes__": bytes(value).hex()}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot encode call parameter {value!r} ({type(value).__name__})")


def from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if "__call__" in value:
            module, function, params = value["__call__"]
            return Composed(module, function, from_json(params))
        if "__bytes__" in value:
            return bytes.fromhex(value["__bytes__"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def canonical(value: Any) -> bytes:
    return json.dumps(to_json(value), sort_keys=True, separators=(",", ":")).encode()


async def sign(chain_id: str, call: Composed, keypair: Any, nonce: int, period: int) -> bytes:
    """The raw extrinsic: signed payload plus signature (the signer may be async)."""
    payload = {
        "chain": chain_id,
        "signer": keypair.ss58_address,
        "crypto": int(getattr(keypair, "crypto_type", 1)),
        "nonce": int(nonce),
        "period": int(period),
        "call": to_json(call),
    }
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    signature = keypair.sign(body)
    if inspect.isawaitable(signature):
        signature = await signature
    signature = bytes(signature)
    if len(signature) == 65:  # MultiSignature version prefix from hardware signers
        signature = signature[1:]
    return json.dumps({"payload": payload, "signature": signature.hex()}, sort_keys=True).encode()


def extrinsic_hash(raw: bytes) -> str:
    return "0x" + hashlib.blake2b(raw, digest_size=32).hexdigest()


@dataclass(frozen=True)
class Decoded:
    signer: str
    nonce: int
    call: Composed
    hash: str


def verify(chain_id: str, raw: bytes) -> Decoded:
    """Check the signature against the claimed signer; the pool refuses anything else."""
    try:
        outer = json.loads(raw)
        payload, signature = outer["payload"], bytes.fromhex(outer["signature"])
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        signer, crypto = str(payload["signer"]), int(payload["crypto"])
        call = from_json(payload["call"])
    except (ValueError, KeyError, TypeError) as e:
        raise PoolRejection(f"Invalid Transaction: could not decode extrinsic ({e})") from e
    if payload["chain"] != chain_id:
        raise PoolRejection("Invalid Transaction: Transaction has a bad signature (other chain)")
    try:
        ok = sp_core.verify(body, signature, signer, crypto)
    except Exception as e:  # the binding raises on malformed keys or signatures
        raise PoolRejection(f"Invalid Transaction: Transaction has a bad signature ({e})") from e
    if not ok:
        raise PoolRejection("Invalid Transaction: Transaction has a bad signature")
    if not isinstance(call, Composed):
        raise PoolRejection("Invalid Transaction: the extrinsic carries no call")
    return Decoded(signer, int(payload["nonce"]), call, extrinsic_hash(raw))


def include(db: sqlite3.Connection, chain_id: str, raw: bytes, block: int) -> list[str]:
    """Include a signed extrinsic in ``block``; returns the hashes included (shield: two)."""
    ext = verify(chain_id, raw)
    pallet.ensure_account(db, ext.signer)
    nonce = int(db.execute("SELECT nonce FROM accounts WHERE ss58=?", (ext.signer,)).fetchone()[0])
    if ext.nonce < nonce:
        raise PoolRejection("Invalid Transaction: Transaction is outdated")
    if ext.nonce > nonce:
        raise PoolRejection("Invalid Transaction: Transaction has a future nonce")
    db.execute("UPDATE accounts SET nonce=nonce+1 WHERE ss58=?", (ext.signer,))
    _execute(db, ext, block)
    hashes = [ext.hash]
    if (ext.call.module, ext.call.function) == SHIELD:
        inner = db.execute(
            "SELECT hash, raw FROM inner_pool WHERE signer=? AND nonce=?",
            (ext.signer, ext.nonce + 1),
        ).fetchone()
        if inner is not None:
            db.execute("DELETE FROM inner_pool WHERE hash=?", (inner["hash"],))
            hashes += include(db, chain_id, bytes.fromhex(inner["raw"]), block)
    return hashes


def _execute(db: sqlite3.Connection, ext: Decoded, block: int) -> None:
    count = db.execute("SELECT COUNT(*) FROM extrinsics WHERE block=?", (block,)).fetchone()[0]
    idx = 1 + int(count)  # 0 is the Timestamp.set inherent
    call = ext.call
    db.execute("SAVEPOINT dispatch")
    try:
        if (call.module, call.function) == SHIELD:
            if len(bytes(call.params.get("ciphertext") or b"")) < 18:
                raise DispatchError("BadEncKeyLen", "ciphertext too short")
            events = [("MevShield", "EncryptedSubmitted", {"who": ext.signer})]
        else:
            events = calls.dispatch(db, ext.signer, call.module, call.function, call.params, block)
        error = None
        db.execute("RELEASE dispatch")
    except DispatchError as e:
        db.execute("ROLLBACK TO dispatch")
        db.execute("RELEASE dispatch")
        events, error = [], e
    records = [_event(idx, m, e, a) for m, e, a in events]
    outcome = (
        ("ExtrinsicSuccess", {})
        if error is None
        else ("ExtrinsicFailed", {"dispatch_error": {"Module": {"name": error.name}}})
    )
    records.append(_event(idx, "System", *outcome))
    db.execute(
        "INSERT INTO extrinsics VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            block,
            idx,
            ext.hash,
            ext.signer,
            call.module,
            call.function,
            int(error is None),
            None if error is None else error.name,
            None if error is None else error.docs,
            json.dumps(records),
        ),
    )


def _event(idx: int, module: str, event: str, attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        "phase": {"ApplyExtrinsic": idx},
        "extrinsic_idx": idx,
        "event": {"module_id": module, "event_id": event, "attributes": attributes},
        "topics": [],
    }


def receipt(db: sqlite3.Connection, chain_id: str, hash_: str, block: int | None = None) -> Any:
    """The ``ExtrinsicResult`` for an included extrinsic, or None when it is not there."""
    from bittensor import ChainError as BtChainError
    from bittensor.balance import Balance
    from bittensor.result import ExtrinsicResult

    sql = "SELECT * FROM extrinsics WHERE hash=?"
    args: list[Any] = [hash_]
    if block is not None:
        sql, args = sql + " AND block=?", [hash_, block]
    row = db.execute(sql, args).fetchone()
    if row is None:
        return None
    common: dict[str, Any] = {
        "block_hash": block_hash(chain_id, row["block"]),
        "extrinsic_id": f"{row['block']}-{row['idx']:04d}",
        "events": json.loads(row["events"]),
    }
    if row["success"]:
        return ExtrinsicResult(success=True, message="Success", fee=Balance.from_rao(0), **common)
    error = BtChainError(row["error_docs"], row["error_name"])
    return ExtrinsicResult(success=False, message=row["error_docs"], error=error, **common)


def block_extrinsics(db: sqlite3.Connection, block: int) -> list[dict[str, Any]]:
    return [
        {
            "extrinsic_hash": r["hash"],
            "address": r["signer"],
            "call": {"call_module": r["module"], "call_function": r["function"], "call_args": []},
        }
        for r in db.execute("SELECT * FROM extrinsics WHERE block=? ORDER BY idx", (block,))
    ]


__all__ = ["Composed", "PoolRejection", "calls", "include", "receipt", "sign"]
