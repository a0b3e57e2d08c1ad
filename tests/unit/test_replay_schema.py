"""neurons/owner/replay.py names the validator store's columns itself (``subnet`` must not import
``neurons``): these tests fail the moment the two drift apart."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from neurons.owner.replay import QUERIES, read_validator_db
from neurons.validator.participant import BASELINE, Miner, Participant
from neurons.validator.store import AnswerRow, EmaRow, StepRow, Store
from subnet.errors import StateError


def _fresh_store(path: Path) -> Store:
    store = Store(path)
    store.set_meta("config", json.dumps({"weights": {"ema_alpha": 0.5}}))
    return store


def test_every_replay_query_runs_on_the_real_store_schema(tmp_path: Path) -> None:
    _fresh_store(tmp_path / "v.sqlite").close()
    con = sqlite3.connect(tmp_path / "v.sqlite")
    for sql in QUERIES:  # an unknown table or column raises here
        con.execute(sql).fetchall()
    with pytest.raises(StateError, match="no recorded steps"):
        read_validator_db(tmp_path / "v.sqlite")


def test_replay_skips_the_baseline_rows_the_validator_writes(tmp_path: Path) -> None:
    store = _fresh_store(tmp_path / "v.sqlite")

    def row(who: Participant, score: float, cause: str = "ok") -> AnswerRow:
        return AnswerRow(
            who=who,
            task_id="t",
            score=score,
            cause=cause,
            detail="",
            gate=1.0,
            s_kl=score,
            s_ref=score,
            s_speed=1.0,
            kl=0.1,
            rkl=0.1,
            tv=0.1,
            overlap=1.0,
            correct=None,
            n_tokens=4,
            ttft_s=None,
            total_s=None,
            verified=True,
            verify_dp=0.0,
            identity=None,
            provenance={},
        )

    store.commit_step(
        StepRow(1, 10, "s", "d", 2, 3, 0.9, 0.1),
        [
            row(Miner(2, "hk2"), 0.6),
            row(Miner(3, "hk3"), 0.0, "validator_error"),
            row(BASELINE, 0.9),
        ],
        [],
        [EmaRow(2, "hk2", 0.3)],
    )
    store.record_weight_set(
        block=10,
        step=1,
        weights={2: 1.0},
        success=True,
        attempts=1,
        matches=True,
        error="",
        read_back={2: 1.0},
    )
    store.close()
    con = sqlite3.connect(tmp_path / "v.sqlite")  # replay drops negative uids as the baseline
    assert con.execute("SELECT uid, role FROM answers WHERE uid < 0").fetchall() == [
        (-1, "baseline")
    ]
    con.close()
    rec = read_validator_db(tmp_path / "v.sqlite")
    assert rec.steps == (1,) and rec.weight_steps == (0,)
    assert rec.observed[0].tolist() == [False, False, True, False]  # uid 3 was not counted
    assert rec.step_scores[0, 2] == pytest.approx(0.6)
