"""``subnet localnet --validators``: two honest validators and a weight copier, real processes.

One short localnet (hf engines, two miners, tempo 10 at 0.5 s blocks, 4 epochs), shared by the
tests below: the honest validators agree with consensus (vtrust >= 0.9, cosine >= 0.95), the
summary JSON carries every validator's numbers and the copier's measured yield beside the
simulator's prediction, the honest validators asked the same prompts with the same seeds
(their quality scores are identical; only speed, timed on each one's own clock, differs), and
nothing outlives the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from neurons.validator.store import StoreReader

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROLES = "validator,validator,validator-copier"
STAKES = (1000.0, 700.0, 300.0)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("validators")
    argv = [
        sys.executable,
        "-m",
        "subnet.cli",
        "localnet",
        "--dir",
        str(tmp / "ln"),
        "--json",
        str(tmp / "summary.json"),
        "--engine",
        "hf",
        "--miners",
        "distilled,undistilled",
        "--validators",
        ROLES,
        "--validator-stakes",
        ",".join(f"{s:g}" for s in STAKES),
        "--tempo",
        "10",
        "--block-time",
        "0.5",
        "--step-blocks",
        "2",
        "--epochs",
        "4",
        "--fresh",
    ]
    proc = subprocess.run(
        argv,
        cwd=tmp,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return {
        "dir": tmp / "ln",
        "stdout": proc.stdout,
        "summary": json.loads((tmp / "summary.json").read_text()),
        "state": json.loads((tmp / "ln" / "localnet.json").read_text()),
    }


def test_honest_validators_agree_with_consensus(run):
    summary = run["summary"]
    honest = [v for v in summary["validators"] if v["role"] == "validator"]
    assert len(honest) == 2
    for v in honest:
        assert v["vtrust"] >= 0.9, v
        assert v["cosine_to_consensus"] >= 0.95, v
        assert v["steps"] > 0 and v["weights_set"] > 0
    agreement = summary["agreement"]
    assert agreement["honest_agree"] is True and agreement["min_pairwise_cosine"] >= 0.95
    assert summary["checks"]["honest validators agree"] is True
    assert "honest validators agree: yes" in run["stdout"]


def test_the_summary_has_every_validator_and_the_copiers_yield_beside_the_prediction(run):
    summary = run["summary"]
    rows = summary["validators"]
    assert [v["role"] for v in rows] == ROLES.split(",")
    fields = {
        "uid",
        "role",
        "stake_share",
        "vtrust",
        "dividend_share",
        "dividend_yield",
        "cosine_to_consensus",
        "steps",
        "weights_set",
        "predicted_yield",
        "predicted_yield_steady",
    }
    for v in rows:
        assert fields <= v.keys(), v
    total = sum(STAKES)
    assert [v["stake_share"] for v in rows] == pytest.approx([s / total for s in STAKES], 1e-2)
    # Each share is written rounded to 6 decimals (neurons/localnet/consensus.py): their sum is
    # 1 within half a unit of the 6th decimal per validator (a run summed to 0.999999).
    rounding = len(rows) * 0.5e-6 + 1e-12
    assert sum(v["dividend_share"] for v in rows) == pytest.approx(1.0, abs=rounding)
    copier = rows[2]
    assert copier["steps"] == 0 and copier["weights_set"] > 0  # copies, never queries
    assert copier["dividend_yield"] > 0 and 0 < copier["predicted_yield"] < 2
    assert summary["prediction"]["scenario"] == "copier"
    assert summary["prediction"]["epochs_window"] == len(summary["epochs"]) == 4
    assert summary["commit_reveal"]["enabled"] is False
    line = next(x for x in run["stdout"].splitlines() if "(validator-copier): dividend yield" in x)
    assert "measured" in line and "the simulator's copier scenario predicts" in line


def test_honest_validators_asked_the_same_prompts_with_the_same_seeds(run):
    """Steps on a shared grid of blocks: same prompts, same per-query seeds, so every answer's
    quality scores are equal for both; only s_speed (each one's own clock) may differ."""
    first, second = (Path(v["db"]) for v in run["state"]["validators"][:2])
    scores = []
    for db in (first, second):
        with StoreReader(db) as reader:
            blocks = {s.step: (s.block, s.seed) for s in reader.steps()}
            scores.append(
                {
                    (blocks[a.step], a.who.uid, a.task_id): (a.s_kl, a.s_ref)
                    for a in reader.answers()
                    if a.cause.ok
                }
            )
    common = scores[0].keys() & scores[1].keys()
    assert len(common) >= 0.5 * min(len(scores[0]), len(scores[1])) > 0
    assert all(scores[0][k] == scores[1][k] for k in common)


def test_every_validator_ran_as_its_own_process_and_none_is_left(run):
    entries = run["state"]["validators"]
    assert [e["process"] for e in entries] == ["validator", "validator2", "validator3-copier"]
    assert len({e["pid"] for e in entries}) == 3 and len({e["db"] for e in entries}) == 3
    logs = {p.name for p in (run["dir"] / "logs").iterdir()}
    assert {"validator.log", "validator2.log", "validator3-copier.log"} <= logs
    for e in entries:
        try:
            os.killpg(int(e["pid"]), 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"{e['process']} (pid {e['pid']}) outlived the run")
