"""Evidence stays bounded under hostile miners: a per-miner, per-step byte cap (proven lies
first), a retention window (lies kept longest) and a total byte cap, on the real store."""

from __future__ import annotations

import base64
from pathlib import Path

from neurons.validator.evidence import bound_evidence, row_bytes
from neurons.validator.store import EmaRow, EvidenceRetention, EvidenceRow, StepRow, Store

LIES = ("dist_mismatch", "fabricated")


def _row(uid: int, task: str, cause: str, size: int) -> EvidenceRow:
    raw = base64.b64encode(b"\x00" * size).decode()
    return EvidenceRow(uid, f"hk{uid}", task, cause, "detail", '{"prompt": [1]}', raw, "{}")


def test_per_miner_step_cap_keeps_lies_first_then_the_smallest() -> None:
    rows = [
        _row(1, "a", "format_shape", 3000),
        _row(1, "b", "dist_mismatch", 6000),
        _row(1, "c", "timeout", 100),
        _row(2, "a", "format_shape", 100),
    ]
    kept = bound_evidence(rows, 9000, LIES)
    assert [(e.uid, e.task_id) for e in kept] == [(1, "b"), (1, "c"), (2, "a")]
    assert sum(row_bytes(e) for e in kept if e.uid == 1) <= 9000


def test_the_first_lie_is_kept_even_above_the_cap() -> None:
    rows = [_row(1, "a", "fabricated", 50_000), _row(1, "b", "fabricated", 50_000)]
    assert [e.task_id for e in bound_evidence(rows, 1000, LIES)] == ["a"]


def _commit(store: Store, step: int, evidence: list[EvidenceRow]) -> None:
    store.commit_step(
        StepRow(step, step, f"s{step}", "d", 45, 0, None, 0.1),
        [],
        evidence,
        [EmaRow(0, "hk0", 0.0)],
    )


def _hostile_run(tmp_path: Path, keep: EvidenceRetention, size: int) -> tuple[Store, list, list]:
    """45 miners, each failing 4 answers a step with ``size``-byte signed streams, one miner in
    three with proven lies; 25 steps. Returns the store, evidence bytes and file size per step."""
    db = tmp_path / "v.sqlite"
    store = Store(db)
    sizes, kept_bytes = [], []
    for step in range(1, 26):
        rows = [
            _row(uid, f"t{k}", "dist_mismatch" if uid % 3 == 0 else "format_shape", size)
            for uid in range(1, 46)
            for k in range(4)
        ]
        _commit(store, step, bound_evidence(rows, 128 << 10, LIES))
        store.prune_evidence(step, keep)
        kept_bytes.append(store.evidence_bytes())
        wal = db.with_name(db.name + "-wal")
        sizes.append(db.stat().st_size + (wal.stat().st_size if wal.exists() else 0))
    return store, kept_bytes, sizes


def _steps(store: Store, cause: str) -> list[int]:
    rows = store._read("SELECT DISTINCT step FROM evidence WHERE cause = ? ORDER BY step", (cause,))
    return [int(r[0]) for r in rows]


def test_the_retention_window_bounds_the_store_and_keeps_lies_longest(tmp_path: Path) -> None:
    keep = EvidenceRetention(keep_steps=4, keep_lie_steps=8, max_bytes=64 << 20, lie_causes=LIES)
    store, kept, sizes = _hostile_run(tmp_path, keep, 16 << 10)
    assert _steps(store, "format_shape") == list(range(22, 26))
    assert _steps(store, "dist_mismatch") == list(range(18, 26))
    assert kept[-1] == kept[10] and max(kept) < keep.max_bytes  # flat once the windows are full
    # The file stops growing once the windows are full (SQLite reuses the freed pages).
    assert max(sizes[12:]) <= max(sizes[:12]) * 1.1, sizes
    store.close()


def test_the_byte_cap_bounds_the_store_oldest_ordinary_evidence_first(tmp_path: Path) -> None:
    keep = EvidenceRetention(
        keep_steps=1000, keep_lie_steps=1000, max_bytes=3 << 20, lie_causes=LIES
    )
    store, kept, sizes = _hostile_run(tmp_path, keep, 16 << 10)
    assert max(kept) <= keep.max_bytes
    assert max(sizes[12:]) <= max(sizes[:12]) * 1.1, sizes
    lies, ordinary = _steps(store, "dist_mismatch"), _steps(store, "format_shape")
    assert lies and min(lies) < min(ordinary or [10**9])  # lies outlive ordinary evidence
    store.close()
