"""The validator's state in one SQLite file: steps, per-answer records, EMA, evidence, weights.

This module owns the file's schema and every query against it. The validator writes through
:class:`Store`; everything else that looks at a validator's state (the owner's
``subnet simulate --replay``, the localnet's watcher) reads through :class:`StoreReader`, so a
change of schema is made in this one module (``tests/unit/test_store_reader.py`` runs every read
against the schema the store creates and fails if the two drift).

Crash safety comes from one rule: everything a step produces (its answers, evidence, the new
EMA and the step row itself) is written in **one** transaction by :meth:`Store.commit_step`, so
a ``kill -9`` at any point leaves either the whole step or none of it; the step in flight is
redone from scratch after a restart (it is seeded from its block, so it asks the same prompts).
Committing a step whose number or block is already stored is refused (``StateError``), which
makes a restart that races an old process harmless instead of a duplicate.

A database written by an older version is brought up to date in place when the validator
opens it (:meth:`Store._migrate`); :class:`StoreReader` reads such a file as it is, without
touching it.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from neurons.validator.participant import BASELINE, Miner, Participant
from scoring.causes import Cause, Role
from subnet.errors import StateError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS steps (
    step INTEGER PRIMARY KEY, block INTEGER NOT NULL UNIQUE, seed TEXT NOT NULL,
    prompts_digest TEXT NOT NULL, status TEXT NOT NULL, n_miners INTEGER NOT NULL DEFAULT 0,
    n_answers INTEGER NOT NULL DEFAULT 0, baseline_score REAL, latency_s REAL,
    created REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
);
CREATE TABLE IF NOT EXISTS answers (
    step INTEGER NOT NULL, uid INTEGER NOT NULL, hotkey TEXT NOT NULL, task_id TEXT NOT NULL,
    score REAL NOT NULL, cause TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '',
    gate REAL NOT NULL, s_kl REAL NOT NULL, s_ref REAL NOT NULL, s_speed REAL NOT NULL,
    kl REAL, rkl REAL, tv REAL, overlap REAL, correct REAL, n_tokens INTEGER NOT NULL,
    ttft_s REAL, total_s REAL, verified INTEGER NOT NULL DEFAULT 0, verify_dp REAL,
    identity TEXT, seed TEXT NOT NULL, prompts_digest TEXT NOT NULL, provenance TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'miner',
    PRIMARY KEY (step, uid, task_id)
);
CREATE TABLE IF NOT EXISTS ema (
    uid INTEGER PRIMARY KEY, hotkey TEXT NOT NULL, ema REAL NOT NULL, step INTEGER NOT NULL,
    suspended INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT, step INTEGER NOT NULL, uid INTEGER NOT NULL,
    hotkey TEXT NOT NULL, task_id TEXT NOT NULL, cause TEXT NOT NULL, detail TEXT NOT NULL,
    request_body TEXT NOT NULL, response_b64 TEXT NOT NULL, signature TEXT NOT NULL,
    UNIQUE (step, uid, task_id)
);
CREATE TABLE IF NOT EXISTS commitments (
    hotkey TEXT NOT NULL, digest TEXT NOT NULL, block INTEGER NOT NULL,
    PRIMARY KEY (hotkey, digest)
);
CREATE TABLE IF NOT EXISTS weight_sets (
    id INTEGER PRIMARY KEY AUTOINCREMENT, block INTEGER NOT NULL, step INTEGER NOT NULL,
    weights_json TEXT NOT NULL, success INTEGER NOT NULL, attempts INTEGER NOT NULL,
    matches INTEGER, error TEXT NOT NULL DEFAULT '', read_back_json TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
);
"""

STEP_DONE = "done"

# ``answers`` is keyed by (step, uid, task_id) and the baseline has no uid: its rows keep the
# uid -1 they have always had (the key stays unique, and older readers, which skipped negative
# uids, still skip them). The ``role`` column says who answered; nothing outside this module
# sees the -1.
_BASELINE_ROW_UID = -1
# The role of an answer in a database written before the ``role`` column existed.
_ROLE_FROM_UID = "CASE WHEN uid < 0 THEN 'baseline' ELSE 'miner' END"
_STEP_COLUMNS = "step, block, seed, prompts_digest, n_miners, n_answers, baseline_score, latency_s"

Rows = list[tuple[Any, ...]]


@dataclass(frozen=True)
class StepRow:
    step: int
    block: int
    seed: str
    prompts_digest: str
    n_miners: int
    n_answers: int
    baseline_score: float | None
    latency_s: float


@dataclass(frozen=True)
class AnswerRow:
    """One answer's record; ``provenance`` is JSON-able (engine, versions, model)."""

    who: Participant
    task_id: str
    score: float
    cause: str
    detail: str
    gate: float
    s_kl: float
    s_ref: float
    s_speed: float
    kl: float | None
    rkl: float | None
    tv: float | None
    overlap: float | None
    correct: float | None
    n_tokens: int
    ttft_s: float | None
    total_s: float | None
    verified: bool
    verify_dp: float | None
    identity: str | None
    provenance: dict[str, Any]


@dataclass(frozen=True)
class EvidenceRow:
    """A failed verification with the miner-signed bytes that prove what it sent."""

    uid: int
    hotkey: str
    task_id: str
    cause: str
    detail: str
    request_body: str
    response_b64: str
    signature: str  # JSON of the response signature fields


@dataclass(frozen=True)
class EmaRow:
    uid: int
    hotkey: str
    ema: float
    suspended: int = 0  # rounds left without reward after a proven lie


class Store:
    """One SQLite connection (WAL, full sync) used from the event loop's thread only."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            self._migrate()
        except (sqlite3.Error, OSError) as e:
            raise StateError(f"cannot open validator state {self.path}: {e}") from e

    def _migrate(self) -> None:
        """Bring a database written by an older version up to ``SCHEMA``, keeping its data."""
        if "suspended" not in _columns(self._db, "ema"):
            self._db.execute("ALTER TABLE ema ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0")

        def add_role(db: sqlite3.Connection) -> None:
            if "role" not in _columns(db, "answers"):  # checked again under the write lock
                db.execute("ALTER TABLE answers ADD COLUMN role TEXT NOT NULL DEFAULT 'miner'")
                db.execute(f"UPDATE answers SET role = {_ROLE_FROM_UID}")

        if "role" not in _columns(self._db, "answers"):
            self._tx(add_role)  # column and roles together: a crash leaves neither

    def close(self) -> None:
        self._db.close()

    def _read(self, sql: str, args: Sequence[Any] = ()) -> Rows:
        try:
            return list(self._db.execute(sql, args).fetchall())
        except sqlite3.Error as e:
            raise StateError(f"validator state read failed: {e}") from e

    def _tx(self, fn: Any) -> Any:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(self._db)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                return out
            except sqlite3.Error as e:
                if self._db.in_transaction:  # a failed COMMIT leaves the transaction open
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise StateError(f"validator state write failed: {e}") from e

    # -- meta -------------------------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        self._tx(
            lambda db: db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                "value = excluded.value",
                (key, value),
            )
        )

    def get_meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    # -- steps ------------------------------------------------------------------------------

    def last_step(self) -> tuple[int, int] | None:
        """(step, block) of the last committed step, or None on a fresh database."""
        rows = self._read("SELECT step, block FROM steps ORDER BY step DESC LIMIT 1")
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    def commit_step(
        self,
        row: StepRow,
        answers: Iterable[AnswerRow],
        evidence: Iterable[EvidenceRow],
        ema: Iterable[EmaRow],
    ) -> None:
        """Write a whole step atomically; ``StateError`` if its step or block is stored."""
        answers, evidence, ema = list(answers), list(evidence), list(ema)

        def write(db: sqlite3.Connection) -> None:
            dup = db.execute(
                "SELECT step FROM steps WHERE step = ? OR block = ?", (row.step, row.block)
            ).fetchone()
            if dup is not None:
                raise StateError(f"step {row.step} (block {row.block}) is already committed")
            db.execute(
                "INSERT INTO steps (step, block, seed, prompts_digest, status, n_miners, "
                "n_answers, baseline_score, latency_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.step,
                    row.block,
                    row.seed,
                    row.prompts_digest,
                    STEP_DONE,
                    row.n_miners,
                    row.n_answers,
                    row.baseline_score,
                    row.latency_s,
                ),
            )
            db.executemany(
                "INSERT INTO answers (step, uid, hotkey, task_id, score, cause, detail, gate, "
                "s_kl, s_ref, s_speed, kl, rkl, tv, overlap, correct, n_tokens, ttft_s, "
                "total_s, verified, verify_dp, identity, seed, prompts_digest, provenance, role) "
                f"VALUES ({', '.join('?' * 26)})",
                [
                    (
                        row.step,
                        _BASELINE_ROW_UID if a.who.uid is None else a.who.uid,
                        a.who.hotkey,
                        a.task_id,
                        a.score,
                        a.cause,
                        a.detail[:500],
                        a.gate,
                        a.s_kl,
                        a.s_ref,
                        a.s_speed,
                        a.kl,
                        a.rkl,
                        a.tv,
                        a.overlap,
                        a.correct,
                        a.n_tokens,
                        a.ttft_s,
                        a.total_s,
                        int(a.verified),
                        a.verify_dp,
                        a.identity,
                        row.seed,
                        row.prompts_digest,
                        json.dumps(a.provenance, sort_keys=True),
                        a.who.role.value,
                    )
                    for a in answers
                ],
            )
            db.executemany(
                "INSERT INTO evidence (step, uid, hotkey, task_id, cause, detail, request_body, "
                "response_b64, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        row.step,
                        e.uid,
                        e.hotkey,
                        e.task_id,
                        e.cause,
                        e.detail[:500],
                        e.request_body,
                        e.response_b64,
                        e.signature,
                    )
                    for e in evidence
                ],
            )
            db.execute("DELETE FROM ema")
            db.executemany(
                "INSERT INTO ema (uid, hotkey, ema, step, suspended) VALUES (?, ?, ?, ?, ?)",
                [(e.uid, e.hotkey, e.ema, row.step, e.suspended) for e in ema],
            )

        self._tx(write)

    def ema(self) -> list[EmaRow]:
        return _ema_rows(self._read)

    def step_scores(self, step: int) -> dict[int, list[tuple[str, float, str]]]:
        """uid -> [(task_id, score, cause)] of one step's miners (tests and reports)."""
        out: dict[int, list[tuple[str, float, str]]] = {}
        for uid, tid, score, cause in self._read(
            "SELECT uid, task_id, score, cause FROM answers WHERE step = ? AND role = ? "
            "ORDER BY uid, task_id",
            (step, Role.MINER.value),
        ):
            out.setdefault(int(uid), []).append((str(tid), float(score), str(cause)))
        return out

    # -- commitments (first-seen records for the copy rule) ----------------------------------

    def record_commitments(self, seen: Iterable[tuple[str, str, int]]) -> None:
        """Keep the first block each (hotkey, digest) was seen; later sightings change nothing."""
        rows = list(seen)
        self._tx(
            lambda db: db.executemany(
                "INSERT OR IGNORE INTO commitments (hotkey, digest, block) VALUES (?, ?, ?)", rows
            )
        )

    def commitments(self, live_hotkeys: Iterable[str]) -> list[tuple[str, str, int]]:
        """Records of hotkeys still on the subnet (a freed model may be committed anew)."""
        live = set(live_hotkeys)
        rows = self._read("SELECT hotkey, digest, block FROM commitments")
        return [(str(h), str(d), int(b)) for h, d, b in rows if h in live]

    # -- weights ----------------------------------------------------------------------------

    def record_weight_set(
        self,
        *,
        block: int,
        step: int,
        weights: dict[int, float],
        success: bool,
        attempts: int,
        matches: bool | None,
        error: str,
        read_back: dict[int, float],
    ) -> None:
        self._tx(
            lambda db: db.execute(
                "INSERT INTO weight_sets (block, step, weights_json, success, attempts, matches, "
                "error, read_back_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    block,
                    step,
                    json.dumps({str(k): v for k, v in sorted(weights.items())}),
                    int(success),
                    attempts,
                    None if matches is None else int(matches),
                    error[:500],
                    json.dumps({str(k): v for k, v in sorted(read_back.items())}),
                ),
            )
        )

    def last_weight_block(self) -> int | None:
        rows = self._read("SELECT MAX(block) FROM weight_sets WHERE success = 1")
        return int(rows[0][0]) if rows and rows[0][0] is not None else None


# -- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredAnswer:
    """One answer as read back: who gave it in which step, its scores and its cause."""

    step: int
    who: Participant
    task_id: str
    score: float
    s_kl: float
    s_ref: float
    s_speed: float
    cause: Cause


@dataclass(frozen=True)
class StoredWeightSet:
    """One attempt to set weights: the normalised weights the validator computed after
    ``step`` (burn to the owner uid included) and whether the chain took them."""

    block: int
    step: int
    weights: dict[int, float]
    success: bool
    error: str


class StoreReader:
    """Read-only access to a validator's state file, for every process but the validator.

    The file is opened ``mode=ro``: the reader never writes, never takes the write lock and,
    the validator keeping its file in WAL mode, neither waits for the validator nor makes it
    wait, so a live validator's state can be read at any time. A file written by an older
    version is read as it is (it is migrated only when a validator opens it).

    ``missing_ok``: a file that does not exist yet, or has no tables yet, reads as empty
    instead of raising, for pollers that start before the validator has created its state.
    Anything else that goes wrong (no such file without ``missing_ok``, not SQLite, not a
    validator's database, an unknown cause code or role) is a one-line :class:`StateError`
    naming the file. Use as a context manager, one per read: it holds a file handle.
    """

    def __init__(self, path: str | Path, *, missing_ok: bool = False) -> None:
        self.path = Path(path)
        self.missing_ok = missing_ok
        self._db: sqlite3.Connection | None = None
        self._role_sql: str | None = None
        if not self.path.is_file():
            if missing_ok:
                return
            raise StateError(f"validator database not found: {self.path}")
        try:
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, timeout=10.0)
        except sqlite3.Error as e:
            raise StateError(f"{self.path}: cannot open as SQLite: {e}") from e

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> Rows:
        if self._db is None:
            return []
        try:
            return list(self._db.execute(sql, args).fetchall())
        except sqlite3.OperationalError as e:
            if str(e).startswith("no such table") and self.missing_ok:
                return []
            if str(e).startswith(("no such table", "no such column")):
                raise StateError(f"{self.path}: not a validator database ({e})") from e
            raise StateError(f"{self.path}: cannot read validator state: {e}") from e
        except sqlite3.DatabaseError as e:  # not SQLite at all, or corrupt
            raise StateError(f"{self.path}: not a validator database ({e})") from e

    # -- meta and steps ----------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        """Every ``meta`` key (``config``: the JSON of the config the validator ran)."""
        return {str(k): str(v) for k, v in self._rows("SELECT key, value FROM meta")}

    def step_count(self) -> int:
        rows = self._rows("SELECT COUNT(*) FROM steps")
        return int(rows[0][0]) if rows else 0

    def steps(self) -> list[StepRow]:
        rows = self._rows(f"SELECT {_STEP_COLUMNS} FROM steps ORDER BY step")
        return [_step_row(r) for r in rows]

    def last_step(self) -> StepRow | None:
        rows = self._rows(f"SELECT {_STEP_COLUMNS} FROM steps ORDER BY step DESC LIMIT 1")
        return _step_row(rows[0]) if rows else None

    # -- answers and EMA ---------------------------------------------------------------------

    def answers(
        self, *, after_step: int | None = None, through_step: int | None = None
    ) -> list[StoredAnswer]:
        """Every answer of the steps in ``(after_step, through_step]`` (default: all), miners'
        and the baseline's, in (step, uid, task) order."""
        where, args = [], []
        if after_step is not None:
            where.append("step > ?")
            args.append(after_step)
        if through_step is not None:
            where.append("step <= ?")
            args.append(through_step)
        rows = self._rows(
            f"SELECT step, {self._role()}, uid, hotkey, task_id, score, s_kl, s_ref, s_speed, "
            f"cause FROM answers {'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY step, uid, task_id",
            args,
        )
        return [self._answer(r) for r in rows]

    def _role(self) -> str:
        """SQL for an answer's role: its column, or what an older file's uid says."""
        if self._role_sql is None:
            cols = {str(r[1]) for r in self._rows("PRAGMA table_info(answers)")}
            self._role_sql = "role" if "role" in cols or not cols else _ROLE_FROM_UID
        return self._role_sql

    def _answer(self, row: tuple[Any, ...]) -> StoredAnswer:
        step, role, uid, hotkey, task_id, score, s_kl, s_ref, s_speed, cause = row
        if role not in (Role.MINER, Role.BASELINE):
            raise StateError(f"{self.path}: step {step}: unknown participant role {role!r}")
        try:
            who: Participant = Miner(int(uid), str(hotkey)) if role == Role.MINER else BASELINE
        except ValueError as e:  # a miner's row with a negative uid
            raise StateError(f"{self.path}: step {step}: {e}") from None
        try:
            code = Cause(cause)
        except ValueError:
            raise StateError(f"{self.path}: step {step}: unknown cause code {cause!r}") from None
        return StoredAnswer(
            int(step),
            who,
            str(task_id),
            float(score or 0.0),
            float(s_kl),
            float(s_ref),
            float(s_speed),
            code,
        )

    def ema(self) -> list[EmaRow]:
        """The EMA after the last committed step, per uid, with its suspension."""
        return _ema_rows(self._rows)

    # -- weights -----------------------------------------------------------------------------

    def weight_sets(self, *, successful_only: bool = False) -> list[StoredWeightSet]:
        """Weight sets in block order (``successful_only``: those the chain took)."""
        where = "WHERE success = 1" if successful_only else ""
        return [
            self._weight_set(r)
            for r in self._rows(
                "SELECT block, step, weights_json, success, error FROM weight_sets "
                f"{where} ORDER BY block, id"
            )
        ]

    def last_weight_set(self, *, successful_only: bool = False) -> StoredWeightSet | None:
        """The latest weight set (``successful_only``: the latest the chain took)."""
        where = "WHERE success = 1" if successful_only else ""
        rows = self._rows(
            "SELECT block, step, weights_json, success, error FROM weight_sets "
            f"{where} ORDER BY id DESC LIMIT 1"
        )
        return self._weight_set(rows[0]) if rows else None

    def _weight_set(self, row: tuple[Any, ...]) -> StoredWeightSet:
        block, step, text, success, error = row
        try:
            weights = {int(k): float(v) for k, v in json.loads(text).items()}
        except (ValueError, AttributeError, TypeError) as e:
            raise StateError(
                f"{self.path}: weights_json is not a {{uid: weight}} object: {str(text)[:80]!r}"
            ) from e
        if any(u < 0 for u in weights):
            raise StateError(f"{self.path}: negative uid in weights_json")
        return StoredWeightSet(int(block), int(step), weights, bool(success), str(error))


# -- queries both sides run ----------------------------------------------------------------


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {str(r[1]) for r in db.execute(f"PRAGMA table_info({table})")}


def _ema_rows(read: Callable[[str], Rows]) -> list[EmaRow]:
    rows = read("SELECT uid, hotkey, ema, suspended FROM ema ORDER BY uid")
    return [EmaRow(int(u), str(h), float(e), int(s)) for u, h, e, s in rows]


def _step_row(r: tuple[Any, ...]) -> StepRow:
    step, block, seed, digest, n_miners, n_answers, baseline, latency = r
    return StepRow(
        int(step),
        int(block),
        str(seed),
        str(digest),
        int(n_miners),
        int(n_answers),
        None if baseline is None else float(baseline),
        float(latency or 0.0),
    )
