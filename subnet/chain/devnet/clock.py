"""Block numbers without a block producer.

``wall``: the head is ``floor((now - genesis_time) / block_time)``, so every process that
opens the file agrees on it and nobody has to run a producer. ``manual``: the head moves only
through ``Devnet.advance`` (deterministic tests). Whoever touches the chain first after a
block passes runs the epochs due by then (``epoch.run_due``), once, in one transaction.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time

from subnet.chain.devnet.store import get_meta

CLOCKS = ("manual", "wall")


def head(db: sqlite3.Connection) -> int:
    if get_meta(db, "clock") == "manual":
        return int(get_meta(db, "manual_head"))
    elapsed = time.time() - float(get_meta(db, "genesis_time"))
    return max(0, int(elapsed // float(get_meta(db, "block_time"))))


def timestamp_ms(db: sqlite3.Connection, block: int) -> int:
    """When a block was (or will be) produced, as ``Timestamp.Now`` reports it."""
    return int(
        (float(get_meta(db, "genesis_time")) + block * float(get_meta(db, "block_time"))) * 1000
    )


def block_hash(chain_id: str, block: int) -> str:
    """32 bytes: 24 bytes tied to the chain and block, then the block number (decodable)."""
    digest = hashlib.blake2b(f"{chain_id}:{block}".encode(), digest_size=24).hexdigest()
    return f"0x{digest}{block:016x}"


def block_of(chain_id: str, hash_: str) -> int | None:
    """The block number a hash names, or None if it is not a hash of this chain."""
    text = str(hash_).lower()
    if len(text) != 66 or not text.startswith("0x"):
        return None
    try:
        block = int(text[-16:], 16)
    except ValueError:
        return None
    return block if block_hash(chain_id, block) == text else None
