"""``subnet localnet --world real``: the whole subnet on the real world's 129,280-id models.

Three honest miners (hf engine) and one cheat, a short tempo and two epochs: every honest miner
must have scored answers, the validator must never fail on its own (``validator_error``), every
prompt it asked must come from the world's chat dataset (``prompts.jsonl``), and the cheat must
earn nothing. The real world comes from the session fixture (built once).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from distill.tiny_spec import TinyWorld
from neurons.validator.store import StoreReader

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_a_short_real_world_localnet_scores_every_honest_miner(tmp_path, real: TinyWorld):
    cmd = [
        sys.executable, "-m", "subnet.cli", "localnet", "--world", "real",
        "--miners", "teacher,distilled,undistilled,adversary-fabricated",
        "--engine", "hf", "--epochs", "2", "--tempo", "10", "--block-time", "0.5",
        "--step-blocks", "2", "--warmup-steps", "2", "--fresh",
        "--dir", str(tmp_path / "ln"), "--json", str(tmp_path / "summary.json"),
    ]  # fmt: skip
    run = subprocess.run(
        cmd,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "real world" in summary["phases"]
    by_role = {m["role"]: m for m in summary["miners"]}
    for role in ("teacher", "distilled", "undistilled"):
        m = by_role[role]
        assert m["answers"] > 0 and m["mean_score"] is not None and m["mean_score"] > 0, m
    for m in summary["miners"]:
        assert "validator_error" not in m["causes"], m
    assert by_role["adversary-fabricated"]["emission_total"] == 0
    assert by_role["teacher"]["emission_total"] > 0
    with StoreReader(tmp_path / "ln" / "validator" / "validator.sqlite") as db:
        asked = db.prompt_sources()
        meta = json.loads(db.meta()["prompt_sources"])
    assert (
        list(asked) == [str(real.root / "prompts.jsonl")]
        and asked[str(real.root / "prompts.jsonl")] > 0
    )
    assert [(m["source"], m["chat"], m["prompts"]) for m in meta] == [
        (str(real.root / "prompts.jsonl"), True, real.info()["heldout_questions"])
    ]
    print("OBSERVED real-world localnet:", run.stdout[-3000:])
