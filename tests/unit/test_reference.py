"""Reference agreement: likelihood credit, ground-truth prefix match, repeated n-gram loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.config import ScoreConfig
from scoring.reference import (
    correctness,
    is_degenerate,
    likelihood_score,
    mean_loglik,
    reference_score,
    repeated_ngram_fraction,
)

CFG = ScoreConfig()
lps = st.lists(st.floats(-30.0, 0.0), min_size=1, max_size=20)


@settings(max_examples=100, deadline=None)
@given(lps, lps, st.floats(0.01, 10.0))
def test_likelihood_score_in_unit_interval_and_full_when_at_least_as_likely(
    miner: list[float], ref: list[float], tau: float
) -> None:
    s = likelihood_score(miner, ref, tau)
    assert 0.0 <= s <= 1.0
    if np.mean(miner) >= np.mean(ref):
        assert s == 1.0
    assert likelihood_score(ref, ref, tau) == 1.0


def test_likelihood_score_decays_with_the_per_token_gap() -> None:
    assert likelihood_score([-2.0, -2.0], [-1.0], 1.0) == pytest.approx(math.exp(-1.0))
    assert likelihood_score([-3.0], [-1.0], 0.5) == pytest.approx(math.exp(-4.0))


def test_mean_loglik_rejects_empty_and_nonfinite() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        mean_loglik([])
    with pytest.raises(ValueError, match="finite"):
        mean_loglik([-1.0, float("nan")])
    with pytest.raises(ValueError, match="finite"):
        mean_loglik([-1.0, float("-inf")])


def test_correctness_is_a_prefix_match_with_eos_stripped() -> None:
    assert correctness([4, 2, 0], [4, 2], eos_token_ids=(0,)) == 1.0
    assert correctness([4, 2, 9, 9], [4, 2], eos_token_ids=(0,)) == 1.0
    assert correctness([4, 0], [4, 2], eos_token_ids=(0,)) == 0.0
    assert correctness([1, 4, 2], [4, 2], eos_token_ids=(0,)) == 0.0  # listing does not pay
    assert correctness([4, 2, 7], [4, 2, 7], eos_token_ids=(0, 7)) == 0.0  # 7 ends it: stripped
    assert correctness([4, 2, 7], [4, 2], eos_token_ids=(0, 7)) == 1.0
    with pytest.raises(ValueError, match="non-empty"):
        correctness([4], [], eos_token_ids=(0,))


def test_repeated_ngram_fraction_of_loops_and_clean_text() -> None:
    assert repeated_ngram_fraction(list(range(40)), 4) == 0.0
    loop = [7, 8, 9] * 20
    assert repeated_ngram_fraction(loop, 4) == pytest.approx((57 - 3) / 57)
    assert repeated_ngram_fraction([1, 2, 3], 4) == 0.0
    with pytest.raises(ValueError, match="n must be"):
        repeated_ngram_fraction([1, 2], 0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=60), st.integers(1, 6))
def test_repeated_ngram_fraction_bounds(tokens: list[int], n: int) -> None:
    f = repeated_ngram_fraction(tokens, n)
    assert 0.0 <= f < 1.0


def test_is_degenerate_needs_length_and_repetition() -> None:
    assert is_degenerate([5, 6] * 20, CFG)
    assert not is_degenerate([5, 6] * 4, CFG)  # too short to judge
    assert not is_degenerate(list(range(64)), CFG)


def test_reference_score_mixes_correctness_when_there_is_a_truth() -> None:
    assert reference_score(0.6, None, CFG) == 0.6
    assert reference_score(0.6, 1.0, CFG) == pytest.approx(0.8)
    assert reference_score(0.6, 0.0, ScoreConfig(correct_weight=1.0)) == 0.0
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="must be in"):
            reference_score(bad, None, CFG)
