"""The one-pass EOS-set bound (scoring/eos.py): an upper bound that, with lookups only where it
reaches 1/2, gives the EOS rules' exact verdicts for one EOS id or several."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.causes import Cause
from scoring.config import EOS_RULE_MIN_PROB, VerifyConfig
from scoring.eos import eos_bounds
from scoring.verify import check_eos

VOCAB = 32


def _answer(
    rng: np.random.Generator, n: int, eos_ids: list[int], peak: float
) -> tuple[np.ndarray, np.ndarray]:
    """Log-distributions [n, VOCAB] with the EOS ids boosted from negligible to near-certain,
    and sampled tokens that hold an EOS id only at the end (engines stop there)."""
    logits = rng.normal(size=(n, VOCAB))
    boost = rng.uniform(0.0, peak, size=(n, 1)) + rng.normal(0.0, 1.0, size=(n, len(eos_ids)))
    logits[:, eos_ids] += boost
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    tokens = np.array([rng.choice(VOCAB, p=np.exp(row) / np.exp(row).sum()) for row in logp])
    early = np.isin(tokens[:-1], eos_ids)
    tokens[:-1][early] = next(t for t in range(VOCAB) if t not in eos_ids)
    return logp, tokens


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(1, 8),
    n_eos=st.integers(1, 3),
    peak=st.floats(0.0, 12.0),
    q=st.floats(EOS_RULE_MIN_PROB, 0.999),
    count=st.integers(1, 4),
)
def test_bound_with_lookups_where_undecided_gives_the_exact_eos_verdicts(
    seed: int, k: int, n_eos: int, peak: float, q: float, count: int
) -> None:
    """What vLLM reports in one pass plus its lookups (exact where the row lists every EOS id or
    the bound is undecided, else the bound) bounds p(EOS set) from above and gives the verdict
    exact values give, for every allowed ``refuse_stop_eos_prob`` and count."""
    rng = np.random.default_rng(seed)
    eos_ids = sorted(rng.choice(VOCAB, size=n_eos, replace=False).tolist())
    n = 12
    logp, tokens = _answer(rng, n, eos_ids, peak)
    top = np.argsort(-logp, axis=1, kind="stable")[:, :k]
    top_lp = np.take_along_axis(logp, top, axis=1).astype(np.float32)  # as engines report
    tgt = logp[np.arange(n), tokens].astype(np.float32)
    exact = np.logaddexp.reduce(logp[:, eos_ids], axis=1)

    b = eos_bounds(top, top_lp, tokens, tgt, eos_ids)
    assert (b.listed <= exact + 1e-5).all()
    assert (b.upper >= exact - 1e-5).all()
    assert np.allclose(b.upper[b.unlisted == 0], exact[b.unlisted == 0], atol=1e-5)
    undecided = b.undecided(tokens, eos_ids)
    if n_eos == 1 and k >= 2:
        assert not undecided.any()  # one EOS id: the bound never reaches 1/2
    if k > n_eos:
        assert not (undecided & (b.listed == -np.inf)).any()  # nothing listed: below 1/2
    reported = np.where(undecided, exact, b.upper)
    cfg = VerifyConfig(refuse_stop_eos_prob=q, refuse_stop_count=count)
    verdicts = [
        check_eos(
            tokens, logp[np.arange(n), tokens], e, eos_token_ids=eos_ids, max_tokens=n, cfg=cfg
        )
        for e in (exact, reported)
    ]
    assert verdicts[0] is verdicts[1]


def test_bound_of_a_row_and_where_it_cannot_decide() -> None:
    eos = [0, 5]
    top = np.array([[0, 3], [3, 4], [3, 4], [0, 5]])
    lps = np.log([[0.88, 0.05], [0.6, 0.3], [0.6, 0.3], [0.5, 0.3]])
    tokens = np.array([3, 3, 0, 7])
    tgt = np.log([0.05, 0.6, 1e-6, 0.1])
    b = eos_bounds(top, lps, tokens, tgt, eos)
    assert b.unlisted.tolist() == [1, 2, 1, 0]
    # row 0: 0.88 listed + one id of at most min(k-th 0.05, rest 0.07): could reach q
    assert np.exp(b.upper[0]) == pytest.approx(0.88 + 0.05, rel=1e-5)
    # row 1: nothing listed, two ids together at most the rest 0.1 (+ slack)
    assert np.exp(b.upper[1]) == pytest.approx(0.1, abs=2e-4)
    # row 2: the given token is an EOS id outside the top-k (the row lists it)
    assert np.exp(b.listed[2]) == pytest.approx(1e-6)
    # row 3: every EOS id listed: exact
    assert np.exp(b.upper[3]) == pytest.approx(0.8)
    assert b.undecided(tokens, eos).tolist() == [True, False, False, False]
    # an EOS token's own position is never looked up: the rules judge its own logprob there
    assert b.undecided([0, 3, 0, 7], eos).tolist() == [False, False, False, False]


def test_bound_edges() -> None:
    rounded = eos_bounds([[1, 2]], np.log([[0.9999, 0.00011]]), [1], np.log([0.9999]), [0])
    assert np.exp(rounded.upper[0]) >= 1e-4  # listed mass past 1: the slack keeps a bound
    none = eos_bounds(np.zeros((2, 0), int), np.zeros((2, 0)), [1, 2], np.log([0.3, 0.9]), [0])
    assert np.exp(none.upper).tolist() == pytest.approx([0.7001, 0.1001])  # k = 0: the rest
    assert none.undecided([1, 2], [0]).tolist() == [True, False]
    with pytest.raises(ValueError, match="mismatch"):
        eos_bounds([[1, 2]], [[0.0]], [1], [0.0], [0])


def test_refuse_stop_eos_prob_has_the_bounds_floor() -> None:
    with pytest.raises(ValueError, match="refuse_stop_eos_prob"):
        VerifyConfig(refuse_stop_eos_prob=EOS_RULE_MIN_PROB - 0.01)
    assert VerifyConfig(refuse_stop_eos_prob=EOS_RULE_MIN_PROB).refuse_stop_eos_prob == 0.5
    cfg = VerifyConfig(refuse_stop_eos_prob=0.5, refuse_stop_count=1)
    tokens, tgt = np.array([3, 0]), np.log([0.4, 0.5])
    assert check_eos(tokens, tgt, np.log([0.5, 0.5]), eos_token_ids=[0], max_tokens=2, cfg=cfg) is (
        Cause.REFUSE_STOP
    )
