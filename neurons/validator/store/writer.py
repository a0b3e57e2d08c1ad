"""The validator's one connection to its state file: every write, in one transaction a step."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from neurons.validator.store.records import (
    AnswerRow,
    EmaRow,
    EvidenceRow,
    PromptRow,
    SpotCheckRow,
    StepRow,
)
from neurons.validator.store.schema import (
    BASELINE_ROW_UID,
    ROLE_FROM_UID,
    SCHEMA,
    STEP_DONE,
    Rows,
    columns,
    ema_rows,
)
from neurons.validator.store.verification import INSERT_CHECKS, VerificationWrites, check_rows
from scoring.causes import Role
from subnet.errors import StateError


class Store(VerificationWrites):
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
        if "suspended" not in columns(self._db, "ema"):
            self._db.execute("ALTER TABLE ema ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0")

        def add_role(db: sqlite3.Connection) -> None:
            if "role" not in columns(db, "answers"):  # checked again under the write lock
                db.execute("ALTER TABLE answers ADD COLUMN role TEXT NOT NULL DEFAULT 'miner'")
                db.execute(f"UPDATE answers SET role = {ROLE_FROM_UID}")

        if "role" not in columns(self._db, "answers"):
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
        *,
        prompts: Iterable[PromptRow] = (),
        meta: Mapping[str, str] | None = None,
        checks: Iterable[SpotCheckRow] = (),
    ) -> None:
        """Write a whole step atomically; ``StateError`` if its step or block is stored.

        ``prompts`` are the step's prompt records (source, dataset and prompt digests). ``meta``
        keys are written in the same transaction (a cursor that must move exactly when the step
        lands, such as how far the organic inbox was read). ``checks``: the answers the step's
        secret draw picked and what their checks found. The new EMA is also appended to
        ``ema_history``, the per-step record the public score export charts.
        """
        answers, evidence, ema, prompts = list(answers), list(evidence), list(ema), list(prompts)
        spot = check_rows(row.step, checks)

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
                        BASELINE_ROW_UID if a.who.uid is None else a.who.uid,
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
            db.executemany(
                "INSERT INTO step_prompts (step, idx, task_id, source, dataset_digest, "
                "prompt_digest) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (row.step, p.index, p.task_id, p.source, p.dataset_digest, p.prompt_digest)
                    for p in prompts
                ],
            )
            db.executemany(INSERT_CHECKS, spot)
            db.execute("DELETE FROM ema")
            db.executemany(
                "INSERT INTO ema (uid, hotkey, ema, step, suspended) VALUES (?, ?, ?, ?, ?)",
                [(e.uid, e.hotkey, e.ema, row.step, e.suspended) for e in ema],
            )
            db.executemany(
                "INSERT INTO ema_history (step, uid, hotkey, ema, suspended) "
                "VALUES (?, ?, ?, ?, ?)",
                [(row.step, e.uid, e.hotkey, e.ema, e.suspended) for e in ema],
            )
            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                "value = excluded.value",
                sorted((meta or {}).items()),
            )

        self._tx(write)

    def ema(self) -> list[EmaRow]:
        return ema_rows(self._read)

    def recent_prompt_digests(self, window: int) -> frozenset[str]:
        """Content digests of the prompts asked in the last ``window`` committed steps."""
        if window <= 0:
            return frozenset()
        rows = self._read(
            "SELECT DISTINCT prompt_digest FROM step_prompts WHERE step > "
            "(SELECT COALESCE(MAX(step), 0) FROM steps) - ?",
            (window,),
        )
        return frozenset(str(r[0]) for r in rows)

    def step_prompts(self, step: int) -> list[PromptRow]:
        """The prompts step ``step`` asked, in order."""
        rows = self._read(
            "SELECT idx, task_id, source, dataset_digest, prompt_digest FROM step_prompts "
            "WHERE step = ? ORDER BY idx",
            (step,),
        )
        return [PromptRow(int(i), str(t), str(s), str(d), str(p)) for i, t, s, d, p in rows]

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
