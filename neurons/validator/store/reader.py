"""Read-only access to a validator's state file, for every process but the validator."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from neurons.validator.participant import BASELINE, Miner, OrganicMiner, Participant
from neurons.validator.store.records import (
    EmaPoint,
    EmaRow,
    StepRow,
    StoredAnswer,
    StoredWeightSet,
)
from neurons.validator.store.schema import ROLE_FROM_UID, STEP_COLUMNS, Rows, ema_rows, step_row
from neurons.validator.store.verification import VerificationReads
from scoring.causes import Cause, Role
from subnet.errors import StateError


class StoreReader(VerificationReads):
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
        rows = self._rows(f"SELECT {STEP_COLUMNS} FROM steps ORDER BY step")
        return [step_row(r) for r in rows]

    def last_step(self) -> StepRow | None:
        rows = self._rows(f"SELECT {STEP_COLUMNS} FROM steps ORDER BY step DESC LIMIT 1")
        return step_row(rows[0]) if rows else None

    def prompt_sources(self) -> dict[str, int]:
        """Prompts asked per source over every recorded step (``synthetic`` or a prompt file as
        configured); empty for a file written before prompts were recorded."""
        if "step_prompts" not in self._tables():
            return {}
        rows = self._rows("SELECT source, COUNT(*) FROM step_prompts GROUP BY source")
        return {str(source): int(n) for source, n in rows}

    # -- answers and EMA ---------------------------------------------------------------------

    def answers(
        self, *, after_step: int | None = None, through_step: int | None = None
    ) -> list[StoredAnswer]:
        """Every answer of the steps in ``(after_step, through_step]`` (default: all), miners',
        the baseline's and organic ones, in (step, uid, task) order."""
        where, args = [], []
        if after_step is not None:
            where.append("step > ?")
            args.append(after_step)
        if through_step is not None:
            where.append("step <= ?")
            args.append(through_step)
        rows = self._rows(
            f"SELECT step, {self._role()}, uid, hotkey, task_id, score, s_kl, s_ref, s_speed, "
            f"cause, verified FROM answers {'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY step, uid, task_id",
            args,
        )
        return [self._answer(r) for r in rows]

    def _role(self) -> str:
        """SQL for an answer's role: its column, or what an older file's uid says."""
        if self._role_sql is None:
            cols = {str(r[1]) for r in self._rows("PRAGMA table_info(answers)")}
            self._role_sql = "role" if "role" in cols or not cols else ROLE_FROM_UID
        return self._role_sql

    def _answer(self, row: tuple[Any, ...]) -> StoredAnswer:
        step, role, uid, hotkey, task_id, score, s_kl, s_ref, s_speed, cause, verified = row
        if role not in (Role.MINER, Role.BASELINE, Role.ORGANIC):
            raise StateError(f"{self.path}: step {step}: unknown participant role {role!r}")
        try:
            who: Participant = BASELINE
            if role == Role.MINER:
                who = Miner(int(uid), str(hotkey))
            elif role == Role.ORGANIC:
                who = OrganicMiner(int(uid), str(hotkey))
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
            bool(verified),
        )

    def ema(self) -> list[EmaRow]:
        """The EMA after the last committed step, per uid, with its suspension."""
        return ema_rows(self._rows)

    def ema_history(self, *, after_step: int | None = None) -> list[EmaPoint]:
        """Each uid's EMA after each step in ``(after_step, last]``, in (step, uid) order.

        Steps committed before the history table existed have none (a file written by an older
        version reads as an empty history)."""
        if "ema_history" not in self._tables():
            return []
        rows = self._rows(
            "SELECT step, uid, hotkey, ema, suspended FROM ema_history WHERE step > ? "
            "ORDER BY step, uid",
            (-1 if after_step is None else after_step,),
        )
        return [EmaPoint(int(s), int(u), str(h), float(e), int(x)) for s, u, h, e, x in rows]

    def _tables(self) -> set[str]:
        return {str(r[0]) for r in self._rows("SELECT name FROM sqlite_master WHERE type='table'")}

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
