"""The validator database's tables and the row decoding the writer and the reader share.

The writer (:class:`neurons.validator.store.writer.Store`) creates these tables and brings a file
written by an older version up to them; the reader reads any version as it is.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from neurons.validator.store.records import EmaRow, StepRow

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
CREATE TABLE IF NOT EXISTS step_prompts (
    step INTEGER NOT NULL, idx INTEGER NOT NULL, task_id TEXT NOT NULL, source TEXT NOT NULL,
    dataset_digest TEXT NOT NULL, prompt_digest TEXT NOT NULL,
    PRIMARY KEY (step, idx)
);
CREATE INDEX IF NOT EXISTS step_prompts_digest ON step_prompts (prompt_digest, step);
CREATE TABLE IF NOT EXISTS ema_history (
    step INTEGER NOT NULL, uid INTEGER NOT NULL, hotkey TEXT NOT NULL, ema REAL NOT NULL,
    suspended INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (step, uid)
);
CREATE TABLE IF NOT EXISTS spot_secrets (
    epoch INTEGER PRIMARY KEY, secret TEXT NOT NULL, commitment TEXT NOT NULL,
    published_block INTEGER NOT NULL, revealed_block INTEGER
);
CREATE TABLE IF NOT EXISTS spot_checks (
    step INTEGER NOT NULL, uid INTEGER NOT NULL, hotkey TEXT NOT NULL, task_id TEXT NOT NULL,
    outcome TEXT NOT NULL, epoch INTEGER NOT NULL, role TEXT NOT NULL DEFAULT 'miner',
    PRIMARY KEY (step, uid, task_id)
);
CREATE TABLE IF NOT EXISTS model_watch (
    hotkey TEXT NOT NULL, digest TEXT NOT NULL, source TEXT NOT NULL,
    first_step INTEGER NOT NULL, grace_from INTEGER NOT NULL, verified_step INTEGER,
    state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', last_step INTEGER NOT NULL,
    PRIMARY KEY (hotkey, digest)
);
CREATE INDEX IF NOT EXISTS evidence_step ON evidence (step);
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
BASELINE_ROW_UID = -1
# The role of an answer in a database written before the ``role`` column existed.
ROLE_FROM_UID = "CASE WHEN uid < 0 THEN 'baseline' ELSE 'miner' END"
STEP_COLUMNS = "step, block, seed, prompts_digest, n_miners, n_answers, baseline_score, latency_s"

Rows = list[tuple[Any, ...]]


def columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {str(r[1]) for r in db.execute(f"PRAGMA table_info({table})")}


def ema_rows(read: Callable[[str], Rows]) -> list[EmaRow]:
    rows = read("SELECT uid, hotkey, ema, suspended FROM ema ORDER BY uid")
    return [EmaRow(int(u), str(h), float(e), int(s)) for u, h, e, s in rows]


def step_row(r: tuple[Any, ...]) -> StepRow:
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
