"""The devnet's one SQLite file: schema, connection settings and transactions.

Several OS processes (validator, miner, CLI) share one file, so every change runs in a
``BEGIN IMMEDIATE`` transaction (one writer at a time, readers never blocked by WAL) and
either commits whole or not at all: a process killed mid-write leaves the previous state.
Anything that is not a devnet file of this schema version is refused with a ``StateError``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from subnet.errors import StateError

SCHEMA_VERSION = 1
APPLICATION_ID = 0x54414F44  # "TAOD": marks the file as a devnet file, not just any SQLite db
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE accounts (ss58 TEXT PRIMARY KEY, nonce INTEGER NOT NULL DEFAULT 0,
                       free INTEGER NOT NULL DEFAULT 0);
CREATE TABLE subnets (netuid INTEGER PRIMARY KEY, owner_coldkey TEXT NOT NULL,
                      owner_hotkey TEXT NOT NULL, registered_at INTEGER NOT NULL,
                      hp TEXT NOT NULL, last_epoch_block INTEGER NOT NULL,
                      epoch_index INTEGER NOT NULL DEFAULT 0,
                      pending INTEGER NOT NULL DEFAULT 0, accrued_to INTEGER NOT NULL);
CREATE TABLE neurons (netuid INTEGER NOT NULL, uid INTEGER NOT NULL, hotkey TEXT NOT NULL,
                      coldkey TEXT NOT NULL, registered_at INTEGER NOT NULL,
                      last_update INTEGER NOT NULL, stake INTEGER NOT NULL DEFAULT 0,
                      permit INTEGER NOT NULL DEFAULT 0, active INTEGER NOT NULL DEFAULT 1,
                      incentive INTEGER NOT NULL DEFAULT 0, dividends INTEGER NOT NULL DEFAULT 0,
                      consensus INTEGER NOT NULL DEFAULT 0, vtrust INTEGER NOT NULL DEFAULT 0,
                      emission INTEGER NOT NULL DEFAULT 0, weights TEXT NOT NULL DEFAULT '[]',
                      bonds TEXT NOT NULL DEFAULT '[]', axon TEXT,
                      PRIMARY KEY (netuid, uid), UNIQUE (netuid, hotkey));
CREATE TABLE commitments (netuid INTEGER NOT NULL, hotkey TEXT NOT NULL, block INTEGER NOT NULL,
                          fields TEXT NOT NULL, PRIMARY KEY (netuid, hotkey));
CREATE TABLE tl_commits (netuid INTEGER NOT NULL, hotkey TEXT NOT NULL, epoch INTEGER NOT NULL,
                         commit_block INTEGER NOT NULL, ciphertext TEXT NOT NULL,
                         reveal_round INTEGER NOT NULL);
CREATE TABLE extrinsics (block INTEGER NOT NULL, idx INTEGER NOT NULL, hash TEXT NOT NULL,
                         signer TEXT NOT NULL, module TEXT NOT NULL, function TEXT NOT NULL,
                         success INTEGER NOT NULL, error_name TEXT, error_docs TEXT,
                         events TEXT NOT NULL, PRIMARY KEY (block, idx));
CREATE INDEX extrinsics_hash ON extrinsics (hash);
CREATE TABLE inner_pool (hash TEXT PRIMARY KEY, signer TEXT NOT NULL, nonce INTEGER NOT NULL,
                         raw TEXT NOT NULL);
CREATE TABLE trace (id INTEGER PRIMARY KEY AUTOINCREMENT, entry TEXT NOT NULL);
"""


class Store:
    """One connection to the devnet file, shared by the threads of one process."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._lock = threading.RLock()

    @classmethod
    def create(cls, path: str | Path, meta: dict[str, Any]) -> Store:
        path = Path(path)
        if path.exists():
            raise StateError(f"devnet file {path} already exists; open it or remove it first")
        conn = _connect(path)
        try:
            with conn:
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.executescript(_SCHEMA)
            store = cls(path, conn)
            with store.tx() as db:
                for key, value in {**meta, "schema_version": SCHEMA_VERSION}.items():
                    db.execute("INSERT INTO meta VALUES (?, ?)", (key, json.dumps(value)))
        except sqlite3.Error as e:
            conn.close()
            raise StateError(f"cannot create devnet file {path}: {e}") from e
        return store

    @classmethod
    def open(cls, path: str | Path) -> Store:
        path = Path(path)
        if not path.is_file():
            raise StateError(f"devnet file {path} does not exist (create it with Devnet.create)")
        with path.open("rb") as f:
            header = f.read(16)
        if header != b"SQLite format 3\x00":
            raise StateError(f"{path} is not a devnet file (not SQLite; corrupt or truncated)")
        try:
            conn = _connect(path)
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            if app_id != APPLICATION_ID:
                raise StateError(f"{path} is an SQLite file but not a devnet file")
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StateError(f"devnet file {path} is corrupt: {check}")
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as e:
            raise StateError(f"devnet file {path} is corrupt or unreadable: {e}") from e
        if row is None or json.loads(row[0]) != SCHEMA_VERSION:
            found = None if row is None else json.loads(row[0])
            raise StateError(
                f"devnet file {path} has schema version {found}, expected {SCHEMA_VERSION}"
            )
        return cls(path, conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: all of it commits, or (on any error) none of it."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise StateError(f"cannot lock devnet file {self.path}: {e}") from e
            try:
                yield self._conn
            except BaseException:
                self._conn.rollback()
                raise
            try:
                self._conn.commit()
            except sqlite3.Error as e:
                self._conn.rollback()
                raise StateError(f"cannot commit to devnet file {self.path}: {e}") from e

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees one consistent snapshot."""
        with self._lock:
            try:
                self._conn.execute("BEGIN")
            except sqlite3.Error as e:
                raise StateError(f"cannot read devnet file {self.path}: {e}") from e
            try:
                yield self._conn
            finally:
                self._conn.rollback()


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def get_meta(db: sqlite3.Connection, key: str) -> Any:
    row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    if row is None:
        raise StateError(f"devnet file is missing meta key {key!r}")
    return json.loads(row[0])


def set_meta(db: sqlite3.Connection, key: str, value: Any) -> None:
    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))
