"""Speed relative to the best valid answer of a round."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.config import SpeedConfig
from scoring.speed import speed_scores

CFG = SpeedConfig()


def test_fastest_valid_answer_scores_one_and_invalid_scores_zero() -> None:
    s = speed_scores([100, 50, 100], [0.1, 0.1, 0.01], [1.0, 1.0, 0.5], [1, 1, 0], CFG)
    assert s[0] == pytest.approx(1.0)  # best tps and ttft among valid answers
    assert s[1] == pytest.approx(0.7 * 0.5 + 0.3 * 1.0)
    assert s[2] == 0.0  # fastest overall, but invalid: neither scored nor setting the bar


def test_no_valid_answer_gives_zeros() -> None:
    assert (speed_scores([10], [0.1], [1.0], [False], CFG) == 0).all()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 500), st.floats(0, 5), st.floats(0, 5), st.booleans()),
        min_size=1,
        max_size=12,
    )
)
def test_speed_scores_are_in_unit_interval(rows: list[tuple[int, float, float, bool]]) -> None:
    n = [r[0] for r in rows]
    ttft = [min(r[1], r[2]) for r in rows]
    total = [max(r[1], r[2]) for r in rows]
    valid = [r[3] for r in rows]
    s = speed_scores(n, ttft, total, valid, CFG)
    assert ((s >= 0) & (s <= 1)).all()
    assert (s[~np.asarray(valid)] == 0).all()
    ok = np.asarray(valid)
    if ok.any() and np.asarray(n)[ok].max() > 0:  # the best token rate earns its full share
        assert s.max() >= 1 - CFG.ttft_weight - 1e-12


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([1, 2], [0.1], [1.0], [True]), "shapes differ"),
        (([1], [float("nan")], [1.0], [True]), "ttft_s must be finite"),
        (([1], [0.1], [-1.0], [True]), "total_s must be finite"),
        (([1], [2.0], [1.0], [True]), "must not exceed"),
    ],
)
def test_speed_rejects_bad_timings(
    args: tuple[list[float], list[float], list[float], list[bool]], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        speed_scores(*args, cfg=CFG)
