"""The validator store's reader (``StoreReader``) on databases the real ``Store`` wrote.

Every process but the validator reads its state through this reader (the owner's replay, the
localnet's watcher and probes), so these tests fail the moment the reader and ``SCHEMA`` drift:
every query runs on a fresh store's schema, and what the store writes reads back field for
field. They also pin where it is used: beside a live validator (WAL), before the validator
has created its file, and on a file an older version wrote (read as it is, never changed).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from neurons.owner.replay import read_validator_db
from neurons.validator.participant import BASELINE, Miner, OrganicMiner, Participant
from neurons.validator.store import (
    SCHEMA,
    AnswerRow,
    EmaPoint,
    EmaRow,
    PromptRow,
    StepRow,
    Store,
    StoredAnswer,
    StoredWeightSet,
    StoreReader,
)
from scoring.causes import Cause
from subnet.errors import StateError

# The answers table as the version before the ``role`` column wrote it.
ROLE_LINE = "    role TEXT NOT NULL DEFAULT 'miner',\n"
OLD_SCHEMA = SCHEMA.replace(ROLE_LINE, "")


def _fresh_store(path: Path) -> Store:
    store = Store(path)
    store.set_meta("config", json.dumps({"weights": {"ema_alpha": 0.5}}))
    return store


def _row(who: Participant, score: float, cause: str = "ok", task: str = "t") -> AnswerRow:
    return AnswerRow(
        who=who,
        task_id=task,
        score=score,
        cause=cause,
        detail="",
        gate=1.0,
        s_kl=score,
        s_ref=score / 2,
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


STEP = StepRow(1, 10, "s", "d", 2, 3, 0.9, 0.1)
ANSWERS = [
    _row(Miner(2, "hk2"), 0.6),
    _row(Miner(3, "hk3"), 0.0, "validator_error"),
    _row(BASELINE, 0.9),
]


def _write_one_step(store: Store) -> None:
    """A step with a miner, a validator_error row and the baseline, and one weight set."""
    store.commit_step(STEP, ANSWERS, [], [EmaRow(2, "hk2", 0.3)])
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


def _assert_empty(db: StoreReader) -> None:
    assert db.meta() == {} and db.step_count() == 0
    assert db.steps() == [] and db.last_step() is None
    assert db.answers() == [] and db.ema() == []
    assert db.weight_sets() == [] and db.last_weight_set() is None
    assert db.last_weight_set(successful_only=True) is None
    assert db.prompt_sources() == {}


def test_every_reader_query_runs_on_the_real_store_schema(tmp_path: Path) -> None:
    Store(tmp_path / "v.sqlite").close()
    with StoreReader(tmp_path / "v.sqlite") as db:  # an unknown table or column raises here
        _assert_empty(db)
    _fresh_store(tmp_path / "v.sqlite").close()
    with pytest.raises(StateError, match="no recorded steps"):
        read_validator_db(tmp_path / "v.sqlite")


def test_what_the_store_writes_reads_back_the_same(tmp_path: Path) -> None:
    store = _fresh_store(tmp_path / "v.sqlite")
    _write_one_step(store)
    later = StepRow(2, 14, "s2", "d2", 1, 1, None, 0.2)
    store.commit_step(later, [_row(Miner(2, "hk2"), 0.4, task="u")], [], [EmaRow(2, "hk2", 0.35)])
    store.record_weight_set(
        block=15,
        step=2,
        weights={2: 1.0},
        success=False,
        attempts=3,
        matches=None,
        error="SettingWeightsTooFast",
        read_back={},
    )
    store.close()
    with StoreReader(tmp_path / "v.sqlite") as db:
        assert db.meta() == {"config": json.dumps({"weights": {"ema_alpha": 0.5}})}
        assert db.steps() == [STEP, later] and db.last_step() == later and db.step_count() == 2
        first = [
            StoredAnswer(
                1, a.who, a.task_id, a.score, a.s_kl, a.s_ref, a.s_speed, Cause(a.cause), True
            )
            for a in sorted(ANSWERS, key=lambda a: -1 if a.who.uid is None else a.who.uid)
        ]
        assert db.answers(through_step=1) == first
        assert first[0].who == BASELINE  # stored as the baseline, whatever its key
        assert [a.step for a in db.answers()] == [1, 1, 1, 2]
        assert [(a.who, a.score) for a in db.answers(after_step=1)] == [(Miner(2, "hk2"), 0.4)]
        assert db.answers(after_step=1, through_step=1) == []
        assert db.ema() == [EmaRow(2, "hk2", 0.35)]
        ok = StoredWeightSet(10, 1, {2: 1.0}, True, "")
        failed = StoredWeightSet(15, 2, {2: 1.0}, False, "SettingWeightsTooFast")
        assert db.weight_sets() == [ok, failed]
        assert db.weight_sets(successful_only=True) == [ok]
        assert db.last_weight_set() == failed
        assert db.last_weight_set(successful_only=True) == ok
        assert db.ema_history() == [
            EmaPoint(1, 2, "hk2", 0.3, 0),
            EmaPoint(2, 2, "hk2", 0.35, 0),
        ]
        assert db.ema_history(after_step=1) == [EmaPoint(2, 2, "hk2", 0.35, 0)]


def test_organic_answers_and_step_meta_read_back(tmp_path: Path) -> None:
    """An organic answer reads back as its miner's organic participant; meta keys written with
    a step land in the same transaction (a step refused as a duplicate writes neither)."""
    store = _fresh_store(tmp_path / "v.sqlite")
    organic = _row(OrganicMiner(4, "hk4"), 0.0, "fabricated", task="organic:r1")
    store.commit_step(
        STEP, [organic], [], [EmaRow(4, "hk4", 0.0, 20)], meta={"organic_cursor": "7"}
    )
    with pytest.raises(StateError, match="already committed"):
        store.commit_step(STEP, [], [], [], meta={"organic_cursor": "9"})
    store.close()
    with StoreReader(tmp_path / "v.sqlite") as db:
        [a] = db.answers()
        assert a.who == OrganicMiner(4, "hk4") and a.cause is Cause.FABRICATED and a.verified
        assert db.meta()["organic_cursor"] == "7"
        assert db.ema_history() == [EmaPoint(1, 4, "hk4", 0.0, 20)]


def test_the_prompt_sources_of_the_steps_read_back(tmp_path: Path) -> None:
    store = _fresh_store(tmp_path / "v.sqlite")
    prompts = [
        PromptRow(0, "chat.jsonl-a", "data/chat.jsonl", "d1", "p1"),
        PromptRow(1, "add-b", "synthetic", "d2", "p2"),
        PromptRow(2, "chat.jsonl-c", "data/chat.jsonl", "d1", "p3"),
    ]
    store.commit_step(STEP, ANSWERS, [], [EmaRow(2, "hk2", 0.3)], prompts=prompts)
    later = StepRow(2, 14, "s2", "d2", 1, 1, None, 0.2)
    store.commit_step(later, [], [], [], prompts=prompts[:1])
    store.close()
    with StoreReader(tmp_path / "v.sqlite") as db:
        assert db.prompt_sources() == {"data/chat.jsonl": 3, "synthetic": 1}


def test_a_path_that_does_not_exist_yet(tmp_path: Path) -> None:
    missing = tmp_path / "vs" / "validator.sqlite"
    with StoreReader(missing, missing_ok=True) as db:  # a poller that starts first
        _assert_empty(db)
    assert not missing.exists() and not missing.parent.exists()  # reading created nothing
    with pytest.raises(StateError, match="validator database not found"):
        StoreReader(missing)


def test_a_file_without_tables_yet(tmp_path: Path) -> None:
    path = tmp_path / "v.sqlite"
    con = sqlite3.connect(path)  # the moment between the validator's connect and its schema
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    with StoreReader(path, missing_ok=True) as db:
        _assert_empty(db)
    with StoreReader(path) as db, pytest.raises(StateError, match="not a validator database"):
        db.steps()


def test_a_file_that_is_not_a_validator_database_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_text("not sqlite at all")
    for missing_ok in (False, True):  # existing but unreadable is never "not yet"
        with StoreReader(bad, missing_ok=missing_ok) as db, pytest.raises(StateError) as err:
            db.step_count()
        assert str(bad) in str(err.value) and "not a validator database" in str(err.value)
        assert "\n" not in str(err.value)


def test_a_live_validator_database_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "v.sqlite"
    store = _fresh_store(path)
    _write_one_step(store)
    assert path.with_name("v.sqlite-wal").exists()  # the step may live in the WAL only
    with StoreReader(path) as db:
        assert db.step_count() == 1 and db.ema() == [EmaRow(2, "hk2", 0.3)]
        # The validator keeps committing while the reader is open, and the reader sees it.
        store.commit_step(StepRow(2, 14, "s", "d", 1, 0, None, 0.1), [], [], [])
        assert db.step_count() == 2 and db.last_step() == StepRow(2, 14, "s", "d", 1, 0, None, 0.1)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            assert db._db is not None
            db._db.execute("DELETE FROM steps")  # opened mode=ro: it cannot write
    store.commit_step(StepRow(3, 18, "s", "d", 1, 0, None, 0.1), [], [], [])
    assert store.last_step() == (3, 18)
    store.close()
    assert read_validator_db(path).steps == (1, 2, 3)


def test_unknown_codes_are_errors_naming_the_file_and_step(tmp_path: Path) -> None:
    path = tmp_path / "v.sqlite"
    store = _fresh_store(path)
    _write_one_step(store)
    store.close()
    con = sqlite3.connect(path)
    con.execute("UPDATE answers SET role = 'ghost' WHERE uid = 2")
    con.commit()
    with StoreReader(path) as db, pytest.raises(StateError, match="step 1: unknown participant"):
        db.answers()
    con.execute("UPDATE answers SET role = 'miner', cause = 'lied' WHERE uid = 2")
    con.commit()
    con.close()
    with StoreReader(path) as db, pytest.raises(StateError, match="step 1: unknown cause code"):
        db.answers()


def test_replay_skips_the_baseline_rows_the_validator_writes(tmp_path: Path) -> None:
    store = _fresh_store(tmp_path / "v.sqlite")
    _write_one_step(store)
    store.close()
    con = sqlite3.connect(tmp_path / "v.sqlite")
    # Stored as the baseline, under a negative uid as before (older readers skip those).
    assert con.execute("SELECT uid, hotkey FROM answers WHERE role = 'baseline'").fetchall() == [
        (-1, "baseline")
    ]
    con.close()
    rec = read_validator_db(tmp_path / "v.sqlite")
    assert rec.steps == (1,) and rec.weight_steps == (0,)
    assert rec.observed[0].tolist() == [False, False, True, False]  # uid 3 was not counted
    assert rec.step_scores[0, 2] == pytest.approx(0.6)


def test_a_database_of_the_previous_version_is_read_as_it_is(tmp_path: Path) -> None:
    assert OLD_SCHEMA != SCHEMA
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript(OLD_SCHEMA)
    con.execute("INSERT INTO meta VALUES ('config', ?)", (json.dumps({"weights": {}}),))
    con.execute(
        "INSERT INTO steps (step, block, seed, prompts_digest, status) "
        "VALUES (1, 10, 's', 'd', 'done')"
    )
    for uid, hotkey, score, cause in ((2, "hk2", 0.6, "ok"), (-1, "baseline", 0.9, "ok")):
        con.execute(
            "INSERT INTO answers (step, uid, hotkey, task_id, score, cause, gate, s_kl, s_ref, "
            "s_speed, n_tokens, seed, prompts_digest, provenance) "
            "VALUES (1, ?, ?, 't', ?, ?, 1, ?, ?, 1, 4, 's', 'd', '{}')",
            (uid, hotkey, score, cause, score, score),
        )
    con.commit()
    con.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with StoreReader(path) as db:
        assert [a.who for a in db.answers()] == [BASELINE, Miner(2, "hk2")]
    rec = read_validator_db(path)
    assert rec.observed[0].tolist() == [False, False, True]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # not migrated by reading
