"""``subnet simulate --replay DB`` on a database the real validator wrote (issue 9).

The validator node runs exactly as ``subnet validator`` runs it (``Validator.run`` on a
wall-clock devnet, hf engine, tiny world) against two honest miners, one fabricating
adversary and its own baseline, setting weights after every step; one query fails inside the
validator itself (a ``validator_error`` answer, which the step skips instead of zeroing).
Replaying its database must give back the weights it recorded in ``weight_sets`` (so replay
left out exactly the answers the step left out: the baseline's and the validator's failure);
replaying under another config must not.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from distill.tiny import TinyWorld
from neurons.owner.replay import read_validator_db, recorded_weights_config, replay
from neurons.validator import miner_client
from neurons.validator.main import Validator
from neurons.validator.participant import BASELINE, Miner
from neurons.validator.store import StoreReader
from scoring.causes import Cause
from scoring.config import WeightsConfig
from subnet.chain.network import open_chain
from subnet.cli import main
from subnet.config import load_config
from tests.integration._validator_kit import NETUID, make_subnet, running_miners

pytestmark = pytest.mark.slow

STEPS = 3


@pytest.fixture(scope="module")
def validator_db(tmp_path_factory: pytest.TempPathFactory, tiny: TinyWorld) -> Path:
    """Run the validator for three steps; its database, with one weight set per step."""
    import asyncio

    tmp = tmp_path_factory.mktemp("replay")
    with pytest.MonkeyPatch.context() as mp:
        return asyncio.run(_run_validator(tiny, tmp, mp))


async def _run_validator(tiny: TinyWorld, tmp: Path, mp: pytest.MonkeyPatch) -> Path:
    sub = make_subnet(tiny, tmp, clock="wall", block_time=0.5, tempo=100)
    real_query, failed = miner_client.query, list[str]()

    async def query_failing_once(session, wallet, caller, target, q, **kw):
        if target.uid == sub.uids["student"] and not failed:  # the validator's fault, not hers
            failed.append(q.task_id)
            raise RuntimeError("injected validator-side failure")
        return await real_query(session, wallet, caller, target, q, **kw)

    mp.setattr(miner_client, "query", query_failing_once)
    cfg = load_config(
        None,
        env={},
        overrides={
            "chain.network": sub.network,
            "chain.netuid": NETUID,
            "validator.teacher": str(sub.zoo["teacher"]),
            "validator.engine": "hf",
            "validator.state_dir": str(tmp / "vs"),
            "validator.tasks_per_step": 2,
            "validator.max_tokens": 8,
            "validator.query_timeout": 5.0,
            "validator.model_roots": str(tmp / "models"),
            "validator.weights_interval": 1,
            "validator.baseline": str(sub.zoo["student"]),
            "verify.spot_check_fraction": 1.0,
            # Non-default weights so the replay has to read them from meta.config.
            "weights.ema_alpha": 0.5,
            "weights.power": 1.0,
            "weights.burn_share": 0.1,
        },
    )
    async with (
        running_miners(sub, tmp, names=("teacher", "student", "fabricated")),
        open_chain(sub.network) as chain,
    ):
        node = Validator(cfg, chain, sub.wallets["vali"])
        assert await node.run(max_steps=STEPS) == 0
    return tmp / "vs" / "validator.sqlite"


def _recorded(db: Path) -> list[dict[int, float]]:
    con = sqlite3.connect(db)
    rows = con.execute("SELECT weights_json FROM weight_sets WHERE success = 1 ORDER BY block")
    out = [{int(k): float(v) for k, v in json.loads(w).items()} for (w,) in rows]
    con.close()
    return out


def test_the_validator_db_has_what_replay_needs(validator_db: Path) -> None:
    con = sqlite3.connect(validator_db)
    assert con.execute("SELECT COUNT(*) FROM steps").fetchone()[0] == STEPS
    # The baseline's answers are recorded under a negative uid; the replay must skip them.
    assert con.execute("SELECT COUNT(*) FROM answers WHERE uid < 0").fetchone()[0] > 0
    assert con.execute("SELECT COUNT(*) FROM answers WHERE score > 0").fetchone()[0] > 0
    sets = _recorded(validator_db)
    assert len(sets) == STEPS and all(abs(sum(w.values()) - 1) < 1e-9 for w in sets)
    assert all(w.get(0, 0.0) > 0 for w in sets)  # the burn went to the owner uid 0


def test_the_baseline_and_a_validator_error_are_recorded_and_left_out(validator_db: Path) -> None:
    with StoreReader(validator_db) as db:
        answers = db.answers()
    assert any(a.who == BASELINE and a.cause is Cause.OK for a in answers)
    errors = [a for a in answers if a.cause is Cause.VALIDATOR_ERROR]
    assert len(errors) == 1 and isinstance(errors[0].who, Miner)
    err = errors[0]
    kept = [
        a.score
        for a in answers
        if a.step == err.step and a.who == err.who and a.cause is not Cause.VALIDATOR_ERROR
    ]
    assert kept and max(kept) > 0  # the miner's other answer of that step scored
    rec = read_validator_db(validator_db)
    k, uid = rec.steps.index(err.step), err.who.uid
    # Skipped, not zeroed: the step's mean is that of the miner's other answers alone.
    assert rec.observed[k, uid] and rec.step_scores[k, uid] == pytest.approx(np.mean(kept))


def test_replay_reproduces_the_weights_the_validator_set(validator_db: Path) -> None:
    rec = read_validator_db(validator_db)
    cfg = recorded_weights_config(rec)
    assert (cfg.ema_alpha, cfg.power, cfg.burn_share) == (0.5, 1.0, 0.1)
    assert len(rec.weight_steps) == STEPS
    recorded = np.zeros_like(rec.weights)
    for i, w in enumerate(_recorded(validator_db)):
        for u, x in w.items():
            recorded[i, u] = x
    np.testing.assert_array_equal(rec.weights, recorded)
    got = replay(rec, cfg)
    assert np.abs(got - recorded).max() < 1e-9
    # Two honest miners and an adversary: weight is spread over more than one uid.
    assert (recorded[-1] > 0).sum() >= 3
    other = replay(rec, WeightsConfig(**{**rec.config["weights"], "power": 4.0}))
    assert np.abs(other - recorded).max() > 1e-3


def test_replay_cli_on_the_validator_db(
    validator_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc = main(
        [
            "simulate",
            "--replay",
            str(validator_db),
            "--out",
            str(out),
            "--no-progress",
            "--set",
            "weights.power=4",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    line = next(x for x in text.splitlines() if "reproduced with the recorded config" in x)
    assert float(line.rsplit("=", 1)[1]) < 1e-9
    recorded = json.loads((out / "recorded_summary.json").read_text())
    replayed = json.loads((out / "replay_summary.json").read_text())
    assert recorded["recorded_reproduction_max_diff"] < 1e-9
    # power 4 concentrates weight on the best miner (the teacher itself).
    assert replayed["top_share_mean"] > recorded["top_share_mean"] + 1e-3
