"""``subnet validator calibrate`` on the tiny world (hf engine): honest claims recompute to a
tiny error, labelled by miner and recompute engine, and the tolerance chosen from them
catches a different model claiming to be the honest one."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer

from distill.tiny import tiny_world
from neurons.validator.calibrate import calibrate, report
from subnet.engine import load_engine

pytestmark = pytest.mark.slow


async def test_calibration_separates_the_honest_model_from_another() -> None:
    world = tiny_world()
    honest, other = load_engine("hf", world.undistilled), load_engine("hf", world.teacher)
    try:
        cal = await calibrate(
            {"hf": honest}, {"hf": honest},
            Tokenizer.from_file(str(world.undistilled / "tokenizer.json")),
            seeds=[0], batch_sizes=[1, 4], tasks=4, k=20, max_tokens=8, temperature=1.0,
            fpr=0.01, margin=2.0, against=other,
        )
    finally:
        await honest.close()
        await other.close()
    assert {(s.miner, s.engine, s.batch) for s in cal.samples} == {("hf", "hf", 1),
                                                                   ("hf", "hf", 4)}
    assert len(cal.samples) == 8 and cal.dps().max() < 1e-4
    assert cal.max_mean_abs_dp >= 1e-4  # the floor: never tighter than float noise
    against = np.array([s.mean_abs_dp for s in cal.against])
    assert (against > cal.max_mean_abs_dp).mean() >= 0.75
    text = report(cal, model="student", against="teacher", provenance="hf")
    assert "| hf -> hf | 1 | 4 |" in text and "max_mean_abs_dp = " in text
