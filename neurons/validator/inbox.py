"""The organic inbox: signed miner answers to users' requests, handed from the gateway to the
validator in one SQLite file.

Why a file and not a call: the validator's state is written by the validator process alone (one
writer, one transaction per step), and the gateway must keep serving users while the validator
restarts, loads engines or runs a long step. So the gateway (:class:`OrganicInbox`) appends each
answer it picked for verification, exactly as the miner signed it (request body, request nonce,
the whole SSE response with its trailing signature), and the validator reads them read-only
(:func:`read_inbox`) at its own pace, re-verifies every signature against its own hotkey as the
caller (the inbox is not trusted: an answer it cannot verify is skipped, never held against the
miner) and spot-checks them in its step. How far it has read is a cursor committed with the
step (``Store.commit_step(meta=...)``), so a crash re-reads, never skips; the gateway prunes
what the cursor has passed (:meth:`OrganicInbox.prune`).

The schema lives here, in the validator's room, because the validator defines what it accepts;
the gateway imports this module to write it.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from subnet.errors import StateError

INBOX_FILE = "organic.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS organic (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, request_id TEXT NOT NULL,
    uid INTEGER NOT NULL, hotkey TEXT NOT NULL, path TEXT NOT NULL, request_body BLOB NOT NULL,
    request_nonce INTEGER, response BLOB NOT NULL, ttft_s REAL, total_s REAL
);
"""
_COLUMNS = (
    "id, created, request_id, uid, hotkey, path, request_body, request_nonce, response, "
    "ttft_s, total_s"
)


@dataclass(frozen=True)
class OrganicRecord:
    """One signed answer as the miner sent it (``id`` is 0 until the inbox assigns one)."""

    request_id: str  # the gateway's response id, e.g. chatcmpl-...
    uid: int
    hotkey: str
    path: str  # the miner path the request was signed for
    request_body: bytes  # exactly the bytes signed (btauth/1) and bound into the response
    request_nonce: int | None
    response: bytes  # the whole SSE stream, signature event and [DONE] included
    ttft_s: float | None = None
    total_s: float | None = None
    id: int = 0
    created: float = 0.0


@dataclass(frozen=True)
class InboxBatch:
    """What a read returned: the inbox's identity (a fresh file restarts the cursor) and rows."""

    inbox: str
    records: tuple[OrganicRecord, ...]


def cursor_text(inbox: str, last_id: int) -> str:
    return f"{inbox}:{last_id}"


def parse_cursor(text: str | None, inbox: str) -> int:
    """The last id read of ``inbox`` (0 when the cursor is for another, recreated file)."""
    if not text:
        return 0
    name, _, last = text.rpartition(":")
    return int(last) if name == inbox and last.isdigit() else 0


class OrganicInbox:
    """The gateway's side: append records, prune those the validator has read."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # the gateway adds on its loop and prunes in a thread
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self.path), isolation_level=None, timeout=10.0, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO inbox_meta (key, value) VALUES ('inbox', ?)",
                (secrets.token_hex(8),),
            )
            self.inbox = str(
                self._db.execute("SELECT value FROM inbox_meta WHERE key = 'inbox'").fetchone()[0]
            )
        except sqlite3.Error as e:
            raise StateError(f"cannot open the organic inbox {self.path}: {e}") from e

    def add(self, r: OrganicRecord) -> int:
        try:
            with self._lock:
                cur = self._db.execute(
                    f"INSERT INTO organic ({_COLUMNS.removeprefix('id, ')}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        time.time(),
                        r.request_id,
                        r.uid,
                        r.hotkey,
                        r.path,
                        r.request_body,
                        r.request_nonce,
                        r.response,
                        r.ttft_s,
                        r.total_s,
                    ),
                )
        except sqlite3.Error as e:
            raise StateError(f"organic inbox write failed: {e}") from e
        return int(cur.lastrowid or 0)

    def prune(self, read_through: int, max_rows: int) -> int:
        """Drop what the validator has read (ids <= ``read_through``) and, when the validator
        does not keep up (or runs without reading), the oldest rows beyond ``max_rows``."""
        try:
            with self._lock:
                gone = self._db.execute("DELETE FROM organic WHERE id <= ?", (read_through,))
                kept = self._db.execute(
                    "DELETE FROM organic WHERE id NOT IN "
                    "(SELECT id FROM organic ORDER BY id DESC LIMIT ?)",
                    (max_rows,),
                )
        except sqlite3.Error as e:
            raise StateError(f"organic inbox prune failed: {e}") from e
        return int(gone.rowcount + kept.rowcount)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM organic").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def read_inbox(path: str | Path, cursor: str | None, limit: int) -> InboxBatch | None:
    """Up to ``limit`` records after ``cursor`` (read-only); None when there is no inbox yet.

    A file that is not an inbox is a one-line ``StateError`` naming it."""
    p = Path(path)
    if not p.is_file() or limit <= 0:
        return None
    try:
        db = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
        try:
            row = db.execute("SELECT value FROM inbox_meta WHERE key = 'inbox'").fetchone()
            if row is None:
                return None
            inbox = str(row[0])
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM organic WHERE id > ? ORDER BY id LIMIT ?",
                (parse_cursor(cursor, inbox), limit),
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error as e:
        raise StateError(f"{p}: cannot read the organic inbox: {e}") from e
    return InboxBatch(inbox, tuple(_record(r) for r in rows))


def _record(r: tuple[Any, ...]) -> OrganicRecord:
    rid, created, request_id, uid, hotkey, path, body, nonce, response, ttft, total = r
    return OrganicRecord(
        request_id=str(request_id),
        uid=int(uid),
        hotkey=str(hotkey),
        path=str(path),
        request_body=bytes(body),
        request_nonce=None if nonce is None else int(nonce),
        response=bytes(response),
        ttft_s=None if ttft is None else float(ttft),
        total_s=None if total is None else float(total),
        id=int(rid),
        created=float(created),
    )
