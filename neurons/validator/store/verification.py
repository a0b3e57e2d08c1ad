"""The store's verification tables: spot-check draw secrets, the checks drawn, the committed
models being fetched, and bounded evidence. Mixins of :class:`~.writer.Store` (writes, and
reads the validator needs) and :class:`~.reader.StoreReader` (what anyone else may read).

An unrevealed secret never leaves the writer: the reader returns a secret only once its epoch
is over and the validator has revealed it, so a public export built on the reader cannot leak
the draw of answers still to come.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from neurons.validator.store.records import (
    EvidenceRetention,
    ModelWatch,
    SpotCheckRow,
    SpotSecret,
)
from neurons.validator.store.schema import BASELINE_ROW_UID, Rows

EVIDENCE_BYTES = "length(request_body) + length(response_b64) + length(signature) + length(detail)"
_WATCH = "hotkey, digest, source, first_step, grace_from, verified_step, state, reason, last_step"


def _watch(r: tuple[Any, ...]) -> ModelWatch:
    hotkey, digest, source, first, grace, verified, state, reason, last = r
    return ModelWatch(
        str(hotkey),
        str(digest),
        str(source),
        int(first),
        int(grace),
        None if verified is None else int(verified),
        str(state),
        str(reason),
        int(last),
    )


def check_rows(step: int, checks: Iterable[SpotCheckRow]) -> list[tuple[Any, ...]]:
    """``spot_checks`` rows of one step (written by ``Store.commit_step``)."""
    return [
        (
            step,
            BASELINE_ROW_UID if c.who.uid is None else c.who.uid,
            c.who.hotkey,
            c.task_id,
            c.outcome,
            c.epoch,
            c.who.role.value,
        )
        for c in checks
    ]


INSERT_CHECKS = (
    "INSERT INTO spot_checks (step, uid, hotkey, task_id, outcome, epoch, role) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class VerificationWrites:
    """What the validator writes and reads back of its verification state."""

    _tx: Callable[[Callable[[sqlite3.Connection], Any]], Any]
    _read: Callable[..., Rows]

    # -- draw secrets ------------------------------------------------------------------------

    def publish_spot_secrets(self, rows: Iterable[tuple[int, str, str]], block: int) -> None:
        """Store (epoch, secret hex, commitment) for epochs that have none yet; an existing
        secret is never replaced (a restart reuses it, so a redone step draws the same)."""
        data = [(e, s, c, block) for e, s, c in rows]
        self._tx(
            lambda db: db.executemany(
                "INSERT OR IGNORE INTO spot_secrets (epoch, secret, commitment, published_block)"
                " VALUES (?, ?, ?, ?)",
                data,
            )
        )

    def spot_secret(self, epoch: int) -> tuple[str, str] | None:
        """(secret hex, commitment) of ``epoch``, or None."""
        rows = self._read("SELECT secret, commitment FROM spot_secrets WHERE epoch = ?", (epoch,))
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    def reveal_spot_secrets(self, before_epoch: int, block: int) -> int:
        """Mark every secret of an epoch before ``before_epoch`` revealed (at ``block``)."""
        cur = self._tx(
            lambda db: db.execute(
                "UPDATE spot_secrets SET revealed_block = ? "
                "WHERE epoch < ? AND revealed_block IS NULL",
                (block, before_epoch),
            )
        )
        return int(cur.rowcount)

    # -- committed models --------------------------------------------------------------------

    def model_watch(self, hotkeys: Sequence[str] | None = None) -> list[ModelWatch]:
        rows = self._read(f"SELECT {_WATCH} FROM model_watch ORDER BY hotkey, first_step")
        out = [_watch(r) for r in rows]
        return out if hotkeys is None else [w for w in out if w.hotkey in set(hotkeys)]

    def save_model_watch(self, rows: Iterable[ModelWatch]) -> None:
        data = [
            (
                w.hotkey,
                w.digest,
                w.source,
                w.first_step,
                w.grace_from,
                w.verified_step,
                w.state,
                w.reason[:300],
                w.last_step,
            )
            for w in rows
        ]
        self._tx(
            lambda db: db.executemany(
                f"INSERT INTO model_watch ({_WATCH}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(hotkey, digest) DO UPDATE SET source = excluded.source, "
                "verified_step = excluded.verified_step, state = excluded.state, "
                "reason = excluded.reason, last_step = excluded.last_step",
                data,
            )
        )

    def forget_models(self, live_hotkeys: Iterable[str]) -> None:
        """Drop the rows of hotkeys that left the subnet (the table stays the subnet's size)."""
        live = sorted(set(live_hotkeys))
        keep = f"WHERE hotkey NOT IN ({', '.join('?' * len(live))})" if live else ""

        def run(db: sqlite3.Connection) -> None:
            db.execute(f"DELETE FROM model_watch {keep}", live)

        self._tx(run)

    # -- evidence ----------------------------------------------------------------------------

    def evidence_bytes(self) -> int:
        rows = self._read(f"SELECT COALESCE(SUM({EVIDENCE_BYTES}), 0) FROM evidence")
        return int(rows[0][0])

    def prune_evidence(self, step: int, keep: EvidenceRetention) -> int:
        """Apply the retention rules after ``step``; returns the rows deleted."""
        lies = list(keep.lie_causes)
        marks = ", ".join("?" * len(lies)) or "''"

        def run(db: sqlite3.Connection) -> int:
            n = db.execute(
                f"DELETE FROM evidence WHERE step <= ? AND cause NOT IN ({marks})",
                (step - keep.keep_steps, *lies),
            ).rowcount
            n += db.execute(
                f"DELETE FROM evidence WHERE step <= ? AND cause IN ({marks})",
                (step - keep.keep_lie_steps, *lies),
            ).rowcount
            total = int(
                db.execute(f"SELECT COALESCE(SUM({EVIDENCE_BYTES}), 0) FROM evidence").fetchone()[0]
            )
            if total <= keep.max_bytes:
                return n
            # Over the byte cap: oldest ordinary evidence goes first, then the oldest lies.
            order = db.execute(
                f"SELECT id, {EVIDENCE_BYTES} FROM evidence "
                f"ORDER BY (cause IN ({marks})), step, id",
                lies,
            ).fetchall()
            doomed = []
            for rid, size in order:
                if total <= keep.max_bytes:
                    break
                doomed.append((rid,))
                total -= int(size)
            db.executemany("DELETE FROM evidence WHERE id = ?", doomed)
            return n + len(doomed)

        return int(self._tx(run))


class VerificationReads:
    """The public side: revealed secrets, the checks drawn, model status, evidence volume."""

    _rows: Callable[..., Rows]

    def _has(self, table: str) -> bool:
        rows = self._rows("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        return bool(rows)

    def spot_secrets(self) -> list[SpotSecret]:
        """Every draw secret's commitment, and the secret itself once revealed (never before)."""
        if not self._has("spot_secrets"):
            return []
        rows = self._rows(
            "SELECT epoch, commitment, published_block, "
            "CASE WHEN revealed_block IS NULL THEN NULL ELSE secret END, revealed_block "
            "FROM spot_secrets ORDER BY epoch"
        )
        return [
            SpotSecret(
                int(e), str(c), int(p), None if s is None else str(s), None if r is None else int(r)
            )
            for e, c, p, s, r in rows
        ]

    def spot_checks(
        self, *, after_step: int | None = None, through_step: int | None = None
    ) -> list[tuple[int, int | None, str, str, str, int]]:
        """(step, uid or None for the baseline, hotkey, task_id, outcome, epoch) of every drawn
        check of the steps in ``(after_step, through_step]``."""
        if not self._has("spot_checks"):
            return []
        lo = -1 if after_step is None else after_step
        hi = 2**62 if through_step is None else through_step
        rows = self._rows(
            "SELECT step, uid, role, hotkey, task_id, outcome, epoch FROM spot_checks "
            "WHERE step > ? AND step <= ? ORDER BY step, uid, task_id",
            (lo, hi),
        )
        return [
            (int(s), None if role != "miner" else int(u), str(h), str(t), str(o), int(e))
            for s, u, role, h, t, o, e in rows
        ]

    def spot_check_counts(
        self, *, after_step: int | None = None, through_step: int | None = None
    ) -> dict[int, dict[str, int]]:
        """uid -> {outcome: checks} over the steps in ``(after_step, through_step]``."""
        out: dict[int, dict[str, int]] = {}
        for _, uid, _, _, outcome, _ in self.spot_checks(
            after_step=after_step, through_step=through_step
        ):
            if uid is not None:
                counts = out.setdefault(uid, {})
                counts[outcome] = counts.get(outcome, 0) + 1
        return out

    def model_status(self) -> list[ModelWatch]:
        """Each hotkey's committed models as the validator tracks them (latest last)."""
        if not self._has("model_watch"):
            return []
        rows = self._rows(f"SELECT {_WATCH} FROM model_watch ORDER BY hotkey, first_step")
        return [_watch(r) for r in rows]

    def evidence_bytes(self) -> int:
        if not self._has("evidence"):
            return 0
        rows = self._rows(f"SELECT COALESCE(SUM({EVIDENCE_BYTES}), 0) FROM evidence")
        return int(rows[0][0]) if rows else 0
