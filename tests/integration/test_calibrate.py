"""``subnet validator calibrate`` on the tiny world (hf engine): honest claims recompute to a
tiny error, labelled by miner and recompute engine, and the tolerance chosen from them
catches a different model claiming to be the honest one."""

from __future__ import annotations

import numpy as np
import pytest

from distill.tasks import generate_tasks
from distill.tiny import TinyWorld
from neurons.validator.calibrate import calibrate, report, write_config
from neurons.validator.judge import Judged, verify_against_committed
from neurons.validator.miner_client import MinerAnswer
from neurons.validator.participant import Miner
from scoring.causes import Cause
from subnet.config import load_config
from subnet.engine import SamplingParams, load_engine
from subnet.tokenizer import ModelTokenizer

pytestmark = pytest.mark.slow


async def test_calibration_separates_the_honest_model_from_another(tiny: TinyWorld) -> None:
    world = tiny
    honest, other = load_engine("hf", world.undistilled), load_engine("hf", world.teacher)
    try:
        cal = await calibrate(
            {"hf": honest},
            {"hf": honest},
            ModelTokenizer(world.undistilled),
            seeds=[0],
            batch_sizes=[1, 4],
            tasks=4,
            k=20,
            max_tokens=8,
            temperature=1.0,
            fpr=0.01,
            margin=2.0,
            against=other,
        )
    finally:
        await honest.close()
        await other.close()
    # Claims generated alone and in batches of 4, each recomputed alone and in batches of 4.
    assert {(s.miner, s.engine, s.miner_batch, s.batch) for s in cal.samples} == {
        ("hf", "hf", g, b) for g in (1, 4) for b in (1, 4)
    }
    assert len(cal.samples) == 16 and cal.dps().max() < 1e-4
    assert cal.max_mean_abs_dp >= 1e-4  # the floor: never tighter than float noise
    against = np.array([s.mean_abs_dp for s in cal.against])
    assert (against > cal.max_mean_abs_dp).mean() >= 0.75
    text = report(cal, model="student", against="teacher", provenance="hf")
    assert "| hf -> hf | 4, 1 | 4 |" in text and "max_mean_abs_dp = " in text


async def test_a_bfloat16_calibration_sets_the_16_bit_tolerance_and_the_judge_uses_it(
    tmp_path, tiny: TinyWorld
) -> None:
    """bf16 rounding is far above the float32 tolerance: calibrating in bf16 writes the
    ``*_half`` keys, and honest bf16 claims pass the judge under them (not under float32's).

    The honest error in bf16 is heavy-tailed (most answers recompute exactly, a few are off by
    up to ~5e-3, more when the claim was generated in a batch), so the calibration needs at
    least 1/fpr samples across batch sizes for its quantile to see the tail: 3 seeds x 16
    prompts x 3 generation x 3 recompute batch sizes = 432. Measured on this project's CI
    machine kind, over 4 such calibrations and 512 held-out honest claims each: tolerance
    0.0059-0.0074, no held-out claim above it, the worst at 0.81 of it; the earlier
    8-sample calibration set 0.0004-0.0048 and failed up to 43 of the 512.
    """
    world = tiny
    honest = load_engine("hf", world.undistilled, dtype="bfloat16")
    tok = ModelTokenizer(world.undistilled)
    fpr = 0.01
    try:
        cal = await calibrate(
            {"hf": honest},
            {"hf": honest},
            tok,
            seeds=[0, 1, 2],
            batch_sizes=[1, 4, 16],
            tasks=16,
            k=20,
            max_tokens=8,
            temperature=1.0,
            fpr=fpr,
            margin=2.0,
        )
        # Fresh honest claims, as a busy miner makes them (batched) and the validator
        # recomputes them (in another batch, in another order).
        held_out = []
        for seed in (101, 102):
            prompts = [
                tok.encode_prompt(t.prompt) for t in generate_tasks(f"judge-bf16-{seed}", 32)
            ]
            params = SamplingParams(max_tokens=8, temperature=1.0, seed=seed, top_logprobs=20)
            for gen_batch in (4, 16):
                done = []
                for start in range(0, len(prompts), gen_batch):
                    done += await honest.generate(prompts[start : start + gen_batch], params)
                order = [*range(1, len(prompts)), 0]
                redo = await honest.score(
                    [prompts[i] for i in order], [done[i].token_ids.tolist() for i in order], 20
                )
                held_out += [(done[i], r) for i, r in zip(order, redo, strict=True)]
    finally:
        await honest.close()
    assert len(cal.samples) >= 1 / fpr  # the quantile is empirical, not the sample maximum
    assert cal.dtype == "bfloat16" and set(cal.config_values()) == {
        "max_mean_abs_dp_half",
        "min_topk_agreement_half",
    }
    toml = tmp_path / "subnet.toml"
    toml.write_text("[verify]\nmax_mean_abs_dp = 0.0001\n")
    write_config(toml, cal)
    cfg = load_config(toml, env={}).verify
    assert cfg.max_mean_abs_dp == 1e-4  # the float32 key is left alone
    assert cfg.max_mean_abs_dp_half == pytest.approx(cal.max_mean_abs_dp, rel=1e-5)
    assert cal.dps().max() > cfg.max_mean_abs_dp  # float32's tolerance would fail this miner
    assert len(held_out) == 128
    for c, r in held_out:
        j = Judged(
            MinerAnswer(
                Miner(1, "hk"),
                "t",
                Cause.OK,
                token_ids=c.token_ids,
                sampled_logprobs=c.sampled_logprobs.astype(np.float64),
                top_ids=c.top_ids,
                top_logprobs=c.top_logprobs.astype(np.float64),
                finish_reason=c.finish_reason,
            ),
            0,
        )
        assert r.provenance.dtype == "bfloat16"
        verify_against_committed(
            j,
            r,
            vocab_size=honest.info.vocab_size,
            eos_token_ids=honest.info.eos_token_ids,
            max_tokens=8,
            cfg=cfg,
        )
        assert j.cause is Cause.OK, j.detail


async def test_recompute_engines_of_mixed_precision_are_refused(tiny: TinyWorld) -> None:
    world = tiny
    full = load_engine("hf", world.undistilled)
    half = load_engine("hf", world.undistilled, dtype="bfloat16")
    try:
        with pytest.raises(ValueError, match="mix precisions"):
            await calibrate(
                {"hf": full},
                {"f32": full, "bf16": half},
                ModelTokenizer(world.undistilled),
                seeds=[0],
                batch_sizes=[1],
                tasks=1,
                k=5,
                max_tokens=4,
                temperature=1.0,
                fpr=0.01,
                margin=2.0,
            )
    finally:
        await full.close()
        await half.close()


def test_calibrate_cli_writes_its_report_in_the_state_dir_and_says_what_it_wrote(
    tiny: TinyWorld, tmp_path
) -> None:
    """Run from a checkout's root it must not overwrite the tracked docs/calibration.md nor
    touch ./subnet.toml, and it claims a config write only when it made one (issue 17)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    cwd = tmp_path / "checkout"
    (cwd / "docs").mkdir(parents=True)
    (cwd / "docs" / "calibration.md").write_text("tracked\n")
    (cwd / "subnet.toml").write_text("[verify]\nmax_mean_abs_dp = 0.5\n")
    argv = [sys.executable, "-m", "subnet.cli", "validator", "calibrate"]
    argv += ["--model", str(tiny.undistilled), "--batch-sizes", "1", "--seeds", "0"]
    argv += ["--tasks", "2", "--max-tokens", "4", "--state-dir", str(tmp_path / "vs")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (cwd / "docs" / "calibration.md").read_text() == "tracked\n"
    assert (cwd / "subnet.toml").read_text() == "[verify]\nmax_mean_abs_dp = 0.5\n"
    report_file = tmp_path / "vs" / "calibration.md"
    assert f"report written to {report_file}" in out.stdout
    assert "no config changed" in out.stdout and "not written to any config" in (
        report_file.read_text()
    )
    # with --write-config, it writes and says so
    out = subprocess.run(
        [*argv, "--write-config", "subnet.toml"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "tolerance written to [verify] of subnet.toml" in out.stdout
    assert "max_mean_abs_dp = 0.5" not in (cwd / "subnet.toml").read_text()
