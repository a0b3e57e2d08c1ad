"""The gateway's own database: API keys (stored hashed), what each key used, and every miner
attempt (usage per miner: requests, tokens, latency, outcome).

A key is ``sk-`` plus 32 random bytes (URL-safe base64), shown once when created; the database
keeps only its SHA-256 (a key carries 256 bits of entropy, so a fast hash is enough: nothing
can be guessed from it) and a short prefix for display. Revocation is a column the serving
process reads on every request, so ``subnet gateway keys revoke`` in another process takes
effect at the next request. Token use is charged when a request ends (``charge``); what a
request may still use is reserved in memory by the serving process (:mod:`neurons.gateway.access`).
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from subnet.errors import ConfigError, StateError

DB_FILE = "gateway.sqlite"
KEY_PREFIX = "sk-"
SHOWN_CHARS = 10  # of a key, kept for display ("sk-AbCd123")

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, prefix TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE, created REAL NOT NULL, revoked REAL,
    rps REAL NOT NULL, burst INTEGER NOT NULL, token_quota INTEGER NOT NULL,
    tokens_used INTEGER NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, request_id TEXT NOT NULL,
    key_id INTEGER NOT NULL, uid INTEGER NOT NULL, hotkey TEXT NOT NULL, outcome TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, ttft_s REAL,
    latency_s REAL NOT NULL, organic INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS attempts_uid ON attempts (uid);
"""
_KEY_COLUMNS = "id, name, prefix, created, revoked, rps, burst, token_quota, tokens_used, requests"


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    created: float
    revoked: float | None
    rps: float
    burst: int
    token_quota: int  # total tokens (prompt + completion) this key may use; 0 = unlimited
    tokens_used: int
    requests: int

    @property
    def active(self) -> bool:
        return self.revoked is None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Attempt:
    """One try of one miner for one request (``outcome`` is ``ok`` or the failure's cause)."""

    request_id: str
    key_id: int
    uid: int
    hotkey: str
    outcome: str
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float | None
    latency_s: float
    organic: bool = False  # handed to the validator for a spot check


@dataclass(frozen=True)
class MinerUsage:
    uid: int
    hotkey: str
    requests: int
    ok: int
    completion_tokens: int
    mean_latency_s: float
    mean_ttft_s: float | None
    organic: int


class KeyStore:
    """One SQLite file (WAL): the serving process and the ``keys`` CLI share it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self.path), isolation_level=None, timeout=10.0, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as e:
            raise StateError(f"cannot open the gateway database {self.path}: {e}") from e

    def close(self) -> None:
        self._db.close()

    def _run(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return list(self._db.execute(sql, args).fetchall())
            except sqlite3.Error as e:
                raise StateError(f"gateway database {self.path}: {e}") from e

    # -- keys -------------------------------------------------------------------------------

    def create(self, name: str, *, rps: float, burst: int, token_quota: int) -> tuple[str, ApiKey]:
        """A new key: (the secret, shown only now; its record)."""
        if not name.strip():
            raise ConfigError("a key needs a name (--name)")
        if rps <= 0 or burst < 1 or token_quota < 0:
            raise ConfigError("need --rps > 0, --burst >= 1 and --quota >= 0")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        self._run(
            "INSERT INTO keys (name, prefix, sha256, created, rps, burst, token_quota) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                name.strip(),
                secret[:SHOWN_CHARS],
                key_hash(secret),
                time.time(),
                rps,
                burst,
                token_quota,
            ),
        )
        found = self.lookup(secret)
        assert found is not None
        return secret, found

    def lookup(self, secret: str) -> ApiKey | None:
        rows = self._run(f"SELECT {_KEY_COLUMNS} FROM keys WHERE sha256 = ?", (key_hash(secret),))
        return _key(rows[0]) if rows else None

    def get(self, key_id: int) -> ApiKey | None:
        rows = self._run(f"SELECT {_KEY_COLUMNS} FROM keys WHERE id = ?", (key_id,))
        return _key(rows[0]) if rows else None

    def list_keys(self) -> list[ApiKey]:
        return [_key(r) for r in self._run(f"SELECT {_KEY_COLUMNS} FROM keys ORDER BY id")]

    def revoke(self, ident: str) -> ApiKey:
        """Revoke by id or by the shown prefix; a clear error when it names no key or several."""
        text = ident.strip()
        found = self.lookup(text) if len(text) > SHOWN_CHARS else None
        if found is not None:  # the whole key
            matches = [found]
        elif text.isdigit():
            matches = [k for k in self.list_keys() if k.id == int(text)]
        else:
            matches = [k for k in self.list_keys() if text and k.prefix.startswith(text)]
        if not matches:
            raise ConfigError(f"no key {ident!r} (see: subnet gateway keys list)")
        if len(matches) > 1:
            raise ConfigError(f"{ident!r} names {len(matches)} keys: revoke by id")
        self._run(
            "UPDATE keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
            (time.time(), matches[0].id),
        )
        revoked = self.get(matches[0].id)
        assert revoked is not None
        return revoked

    def charge(self, key_id: int, tokens: int) -> None:
        """One request's tokens (prompt + completion) against its key."""
        self._run(
            "UPDATE keys SET tokens_used = tokens_used + ?, requests = requests + 1 WHERE id = ?",
            (tokens, key_id),
        )

    # -- usage per miner ----------------------------------------------------------------------

    def record(self, attempts: Sequence[Attempt]) -> None:
        with self._lock:
            try:
                self._db.executemany(
                    "INSERT INTO attempts (ts, request_id, key_id, uid, hotkey, outcome, "
                    "prompt_tokens, completion_tokens, ttft_s, latency_s, organic) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            time.time(),
                            a.request_id,
                            a.key_id,
                            a.uid,
                            a.hotkey,
                            a.outcome,
                            a.prompt_tokens,
                            a.completion_tokens,
                            a.ttft_s,
                            a.latency_s,
                            int(a.organic),
                        )
                        for a in attempts
                    ],
                )
            except sqlite3.Error as e:
                raise StateError(f"gateway database {self.path}: {e}") from e

    def attempts(self, request_id: str) -> list[Attempt]:
        rows = self._run(
            "SELECT request_id, key_id, uid, hotkey, outcome, prompt_tokens, completion_tokens, "
            "ttft_s, latency_s, organic FROM attempts WHERE request_id = ? ORDER BY id",
            (request_id,),
        )
        return [
            Attempt(
                str(rid),
                int(kid),
                int(uid),
                str(hk),
                str(outcome),
                int(pt),
                int(ct),
                None if ttft is None else float(ttft),
                float(lat),
                bool(org),
            )
            for rid, kid, uid, hk, outcome, pt, ct, ttft, lat, org in rows
        ]

    def usage(self) -> list[MinerUsage]:
        rows = self._run(
            "SELECT uid, hotkey, COUNT(*), SUM(outcome = 'ok'), SUM(completion_tokens), "
            "AVG(latency_s), AVG(ttft_s), SUM(organic) FROM attempts GROUP BY uid, hotkey "
            "ORDER BY uid"
        )
        return [
            MinerUsage(
                int(u),
                str(h),
                int(n),
                int(ok or 0),
                int(tok or 0),
                float(lat or 0.0),
                None if ttft is None else float(ttft),
                int(org or 0),
            )
            for u, h, n, ok, tok, lat, ttft, org in rows
        ]


def _key(r: tuple[Any, ...]) -> ApiKey:
    kid, name, prefix, created, revoked, rps, burst, quota, used, requests = r
    return ApiKey(
        int(kid),
        str(name),
        str(prefix),
        float(created),
        None if revoked is None else float(revoked),
        float(rps),
        int(burst),
        int(quota),
        int(used),
        int(requests),
    )
