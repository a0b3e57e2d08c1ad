"""The validator's SQLite state: atomic step commits, no duplicates, first-seen commitments."""

from __future__ import annotations

import json
import sqlite3

import pytest

from neurons.validator.participant import BASELINE, Miner
from neurons.validator.store import (
    SCHEMA,
    AnswerRow,
    EmaRow,
    EvidenceRow,
    PromptRow,
    StepRow,
    Store,
    StoreReader,
)
from subnet.errors import StateError


def _answer(uid: int, task: str, score: float = 0.5, cause: str = "ok") -> AnswerRow:
    return AnswerRow(
        who=Miner(uid, f"hk{uid}"),
        task_id=task,
        score=score,
        cause=cause,
        detail="",
        gate=1.0 if cause == "ok" else 0.0,
        s_kl=0.5,
        s_ref=0.5,
        s_speed=0.5,
        kl=0.1,
        rkl=0.1,
        tv=0.1,
        overlap=0.9,
        correct=None,
        n_tokens=4,
        ttft_s=0.01,
        total_s=0.02,
        verified=False,
        verify_dp=None,
        identity=None,
        provenance={"teacher": {"engine": "hf"}},
    )


def _step(step: int, block: int) -> StepRow:
    return StepRow(step, block, f"seed{block}", "digest", 2, 2, None, 0.1)


def test_commit_step_writes_everything_in_one_transaction(tmp_path):
    store = Store(tmp_path / "v.sqlite")
    ev = EvidenceRow(2, "hk2", "t1", "dist_mismatch", "dp", "{}", "AAAA", "{}")
    store.commit_step(
        _step(1, 10),
        [_answer(1, "t1"), _answer(2, "t1", 0.0, "dist_mismatch")],
        [ev],
        [EmaRow(0, "hk0", 0.0), EmaRow(1, "hk1", 0.1)],
    )
    assert store.last_step() == (1, 10)
    assert store.ema() == [EmaRow(0, "hk0", 0.0), EmaRow(1, "hk1", 0.1)]
    assert store.step_scores(1) == {1: [("t1", 0.5, "ok")], 2: [("t1", 0.0, "dist_mismatch")]}
    store.close()
    db = sqlite3.connect(tmp_path / "v.sqlite")
    row = db.execute(
        "SELECT seed, prompts_digest, provenance FROM answers WHERE uid = 1"
    ).fetchone()
    assert row[0] == "seed10" and row[1] == "digest"
    assert json.loads(row[2]) == {"teacher": {"engine": "hf"}}
    assert db.execute("SELECT COUNT(*) FROM evidence").fetchone()[0] == 1


def test_a_committed_step_or_block_is_refused_and_nothing_of_it_is_written(tmp_path):
    store = Store(tmp_path / "v.sqlite")
    store.commit_step(_step(1, 10), [_answer(1, "t1")], [], [EmaRow(1, "hk1", 0.1)])
    for dup in (_step(1, 11), _step(2, 10)):
        with pytest.raises(StateError, match="already committed"):
            store.commit_step(dup, [_answer(1, "t2")], [], [EmaRow(1, "hk1", 0.9)])
    assert store.ema() == [EmaRow(1, "hk1", 0.1)]
    assert store.step_scores(1) == {1: [("t1", 0.5, "ok")]}
    assert store.last_step() == (1, 10)


def test_a_failing_insert_rolls_back_the_whole_step(tmp_path):
    store = Store(tmp_path / "v.sqlite")
    twice = [_answer(1, "t1"), _answer(1, "t1")]  # duplicate primary key mid-transaction
    with pytest.raises(StateError):
        store.commit_step(_step(1, 10), twice, [], [EmaRow(1, "hk1", 0.5)])
    assert store.last_step() is None
    assert store.ema() == []
    store.commit_step(_step(1, 10), [_answer(1, "t1")], [], [EmaRow(1, "hk1", 0.5)])
    assert store.last_step() == (1, 10)


def test_state_survives_reopening(tmp_path):
    store = Store(tmp_path / "v.sqlite")
    store.commit_step(_step(3, 30), [_answer(0, "t")], [], [EmaRow(0, "a", 0.25)])
    store.set_meta("config", '{"weights": {}}')
    store.close()
    again = Store(tmp_path / "v.sqlite")
    assert again.last_step() == (3, 30)
    assert again.ema() == [EmaRow(0, "a", 0.25)]
    assert again.get_meta("config") == '{"weights": {}}'


def test_commitments_keep_the_first_block_seen_and_drop_departed_hotkeys(tmp_path):
    store = Store(tmp_path / "v.sqlite")
    store.record_commitments([("a", "d1", 5), ("b", "d1", 7)])
    store.record_commitments([("a", "d1", 9), ("a", "d2", 9)])  # re-seen later: block kept
    assert sorted(store.commitments(["a", "b"])) == [("a", "d1", 5), ("a", "d2", 9), ("b", "d1", 7)]
    assert store.commitments(["b"]) == [("b", "d1", 7)]


def test_weight_sets_are_recorded_success_or_not(tmp_path):
    store = Store(tmp_path / "v.sqlite")
    assert store.last_weight_block() is None
    store.record_weight_set(
        block=10,
        step=1,
        weights={1: 1.0},
        success=False,
        attempts=3,
        matches=None,
        error="RATE_LIMITED",
        read_back={},
    )
    assert store.last_weight_block() is None
    store.record_weight_set(
        block=12,
        step=2,
        weights={1: 0.5, 2: 0.5},
        success=True,
        attempts=1,
        matches=True,
        error="",
        read_back={1: 0.5, 2: 0.5},
    )
    assert store.last_weight_block() == 12


def test_an_unwritable_location_is_a_state_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StateError, match="cannot open"):
        Store(tmp_path / "file" / "v.sqlite")


def test_suspensions_are_stored_and_an_older_database_is_migrated(tmp_path):
    path = tmp_path / "v.sqlite"
    old = sqlite3.connect(path)  # the ema table as the first release wrote it
    old.execute(
        "CREATE TABLE ema (uid INTEGER PRIMARY KEY, hotkey TEXT NOT NULL, "
        "ema REAL NOT NULL, step INTEGER NOT NULL)"
    )
    old.execute("INSERT INTO ema VALUES (0, 'a', 0.5, 3)")
    old.commit()
    old.close()
    store = Store(path)
    assert store.ema() == [EmaRow(0, "a", 0.5, 0)]  # kept, with no suspension
    store.commit_step(_step(4, 40), [_answer(0, "t")], [], [EmaRow(0, "a", 0.0, 7)])
    store.close()
    assert Store(path).ema() == [EmaRow(0, "a", 0.0, 7)]


def test_an_older_database_gets_the_role_column_and_its_baseline_rows_keep_their_data(tmp_path):
    path = tmp_path / "v.sqlite"
    old = sqlite3.connect(path)  # the schema as the version before the role column wrote it
    old.executescript(SCHEMA.replace("    role TEXT NOT NULL DEFAULT 'miner',\n", ""))
    for uid, hotkey, score in ((-1, "baseline", 0.9), (2, "hk2", 0.6)):
        old.execute(
            "INSERT INTO answers (step, uid, hotkey, task_id, score, cause, gate, s_kl, s_ref, "
            "s_speed, n_tokens, seed, prompts_digest, provenance) "
            "VALUES (1, ?, ?, 't', ?, 'ok', 1, ?, ?, 1, 4, 's', 'd', '{}')",
            (uid, hotkey, score, score, score),
        )
    old.commit()
    old.close()
    Store(path).close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT uid, hotkey, role, score FROM answers ORDER BY uid").fetchall() == [
        (-1, "baseline", "baseline", 0.9),
        (2, "hk2", "miner", 0.6),
    ]
    db.close()
    with StoreReader(path) as reader:
        assert [(a.who, a.score) for a in reader.answers()] == [
            (BASELINE, 0.9),
            (Miner(2, "hk2"), 0.6),
        ]
    store = Store(path)  # opening again migrates nothing twice
    assert store.step_scores(1) == {2: [("t", 0.6, "ok")]}  # miners only
    store.commit_step(_step(2, 20), [_answer(2, "t")], [], [])
    store.close()


def test_step_prompts_are_recorded_and_an_older_database_gets_the_table(tmp_path):
    path = tmp_path / "v.sqlite"
    old = sqlite3.connect(path)  # the schema as the version before prompt records wrote it
    cut = SCHEMA.index("CREATE TABLE IF NOT EXISTS step_prompts")
    old.executescript(
        SCHEMA[:cut] + SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS weight_sets") :]
    )
    old.execute(
        "INSERT INTO steps (step, block, seed, prompts_digest, status) "
        "VALUES (1, 10, 's', 'd', 'done')"
    )
    old.commit()
    old.close()
    store = Store(path)
    assert store.recent_prompt_digests(5) == frozenset()  # the old steps recorded none
    prompts = [
        PromptRow(0, "t0", "synthetic", "ds", "p0"),
        PromptRow(1, "t1", "a.jsonl", "df", "p1"),
    ]
    store.commit_step(_step(2, 20), [], [], [], prompts=prompts)
    store.commit_step(
        _step(3, 30), [], [], [], prompts=[PromptRow(0, "t2", "synthetic", "ds", "p2")]
    )
    store.close()
    store = Store(path)
    assert store.step_prompts(2) == prompts
    assert store.recent_prompt_digests(1) == {"p2"}
    assert store.recent_prompt_digests(2) == {"p0", "p1", "p2"}
    assert store.recent_prompt_digests(0) == frozenset()
    with pytest.raises(StateError, match="already committed"):  # nothing of a refused step
        store.commit_step(
            _step(3, 31), [], [], [], prompts=[PromptRow(0, "t9", "synthetic", "ds", "p9")]
        )
    assert store.recent_prompt_digests(9) == {"p0", "p1", "p2"}
    store.close()
