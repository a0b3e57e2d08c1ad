"""The validator's INFO lines read as plain numbers, whatever types the step hands over."""

from __future__ import annotations

import numpy as np

from neurons.validator.main import step_line, weights_line
from neurons.validator.step import StepResult
from neurons.validator.weights import WeightOutcome


def test_step_line_names_causes_leaders_and_seconds_in_plain_numbers() -> None:
    r = StepResult(
        step=12,
        block=345,
        n_answers=12,
        means={np.int64(2): np.float64(0.8)},  # type: ignore[dict-item]
        ema={np.int64(2): np.float64(0.81234), 3: 0.5, 4: 0.0},  # type: ignore[dict-item]
        causes={2: ["ok"] * 4, 3: ["ok", "ok", "timeout", "timeout"], 4: ["format_schema"] * 4},
        baseline_score=0.7,
        teacher_tokens=10,
        teacher_seconds=0.1,
    )
    line = step_line(r, 2.345)
    assert line == (
        "step 12 block 345: 12 answers from 3 miners, 6 ok, failed: format_schema 4, "
        "timeout 2; top EMA: uid 2 0.812, uid 3 0.500; baseline 0.700; 2.3 s"
    )
    assert "np." not in line


def test_weights_line_says_what_happened() -> None:
    ok = WeightOutcome(400, {1: 0.25, 2: 0.75}, True, 1, True)
    assert weights_line(ok) == (
        "weights set at block 400: 2 uids (uid 2 0.750, uid 1 0.250), read back equal, 1 attempt(s)"
    )
    failed = WeightOutcome(401, {1: 1.0}, False, 3, None, "NeuronNoValidatorPermit: refused")
    assert weights_line(failed) == (
        "weights NOT set at block 401 after 3 attempt(s): NeuronNoValidatorPermit: refused"
    )
