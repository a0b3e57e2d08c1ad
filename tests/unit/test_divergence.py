"""Properties of the top-k divergences, checked against dense references on small vocabularies."""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.divergence import (
    EPS,
    divergence_stats,
    divergence_stats_many,
    forward_kl,
    reverse_kl,
    topk_overlap,
    total_variation,
)

F = npt.NDArray[np.float64]
Ids = npt.NDArray[np.int64]


def topk(probs: F, k: int) -> tuple[Ids, F]:
    """Top-k ids and logprobs per row of a dense [P, V] probability matrix, sorted descending."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return order.astype(np.int64), np.log(np.take_along_axis(probs, order, axis=1))


def softmax(z: F) -> F:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)


@st.composite
def dists(draw: st.DrawFn) -> tuple[F, F]:
    """A teacher and a student dense distribution [P, V] with every probability > ~1e-5."""
    n_pos = draw(st.integers(1, 4))
    vocab = draw(st.integers(2, 24))
    logits = st.floats(-6.0, 6.0, allow_nan=False)
    t = np.array(draw(st.lists(logits, min_size=n_pos * vocab, max_size=n_pos * vocab)))
    s = np.array(draw(st.lists(logits, min_size=n_pos * vocab, max_size=n_pos * vocab)))
    return softmax(t.reshape(n_pos, vocab)), softmax(s.reshape(n_pos, vocab))


def coarse_kl(p: F, q: F, t_ids: Ids) -> F:
    """Dense reference: KL between p and q coarse-grained to (teacher top-K, everything else)."""
    out = []
    for row in range(p.shape[0]):
        ids = t_ids[row]
        pt, qt = p[row, ids], q[row, ids]
        p_tail, q_tail = max(0.0, 1 - pt.sum()), max(EPS, 1 - qt.sum())
        kl = float((pt * np.log(pt / qt)).sum())
        kl += p_tail * math.log(p_tail / q_tail) if p_tail > 0 else 0.0
        out.append(max(kl, 0.0))
    return np.array(out)


@settings(max_examples=60, deadline=None)
@given(dists(), st.data())
def test_divergences_are_nonnegative_and_tv_bounded(pq: tuple[F, F], data: st.DataObject) -> None:
    p, q = pq
    vocab = p.shape[1]
    k_t, k_s = data.draw(st.integers(0, vocab)), data.draw(st.integers(0, vocab))
    args = (*topk(p, k_t), *topk(q, k_s), vocab)
    assert (forward_kl(*args) >= 0).all()
    assert (reverse_kl(*args) >= 0).all()
    tv = total_variation(*args)
    assert ((tv >= 0) & (tv <= 1 + 1e-9)).all()


@settings(max_examples=50, deadline=None)
@given(dists(), st.data())
def test_identical_inputs_give_zero(pq: tuple[F, F], data: st.DataObject) -> None:
    p, _ = pq
    k = data.draw(st.integers(1, p.shape[1]))
    ids, lp = topk(p, k)
    args = (ids, lp, ids, lp, p.shape[1])
    assert np.allclose(forward_kl(*args), 0.0, atol=1e-9)
    assert np.allclose(reverse_kl(*args), 0.0, atol=1e-9)
    assert np.allclose(total_variation(*args), 0.0, atol=1e-9)
    assert (topk_overlap(*args, k=k) == 1.0).all()


@settings(max_examples=50, deadline=None)
@given(dists(), st.data())
def test_full_student_matches_dense_coarse_grained_kl(pq: tuple[F, F], data: st.DataObject) -> None:
    """With the whole student distribution reported, nothing is imputed: exact coarse KL."""
    p, q = pq
    vocab = p.shape[1]
    t_ids, t_lp = topk(p, data.draw(st.integers(1, vocab)))
    got = forward_kl(t_ids, t_lp, *topk(q, vocab), vocab)
    assert np.allclose(got, coarse_kl(p, q, t_ids), atol=1e-9)
    if t_ids.shape[1] == vocab:  # full support on both sides: the textbook KL
        dense = (p * np.log(p / q)).sum(axis=1)
        assert np.allclose(got, dense, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(dists(), st.data())
def test_monotone_under_mixing_toward_teacher(pq: tuple[F, F], data: st.DataObject) -> None:
    """Moving the student toward the teacher never raises the forward KL (nor TV).

    Checked per position over the mixing steps at which the student reports every teacher
    token. Where it omits some, q_t is an imputed estimate and exact monotonicity is not
    promised: e.g. p = (.41, .07, .52), q = (.39, .30, .30), K = k = 1 gives KL .1025 at
    lambda = 0 and .1033 at lambda = .1, because the even spread of the unreported mass
    under-guesses the teacher's token as the student's tail reshuffles.
    """
    p, q = pq
    vocab = p.shape[1]
    t_ids, t_lp = topk(p, data.draw(st.integers(1, vocab)))
    k_s = data.draw(st.integers(1, vocab))
    prev_kl, prev_tv = np.full(p.shape[0], np.inf), np.full(p.shape[0], np.inf)
    for lam in np.linspace(0.0, 1.0, 11):
        s_ids, s_lp = topk((1 - lam) * q + lam * p, k_s)
        covered = np.array([set(t) <= set(s) for t, s in zip(t_ids, s_ids, strict=True)])
        kl = forward_kl(t_ids, t_lp, s_ids, s_lp, vocab)
        tv = total_variation(t_ids, t_lp, s_ids, s_lp, vocab)
        assert (kl[covered] <= prev_kl[covered] + 1e-9).all(), (lam, kl, prev_kl)
        assert (tv[covered] <= prev_tv[covered] + 1e-9).all(), (lam, tv, prev_tv)
        prev_kl = np.where(covered, kl, prev_kl)
        prev_tv = np.where(covered, tv, prev_tv)


@settings(max_examples=50, deadline=None)
@given(dists(), st.data())
def test_monotone_under_mixing_with_full_student(pq: tuple[F, F], data: st.DataObject) -> None:
    """With the student's whole distribution reported, every mixing step is checked."""
    p, q = pq
    vocab = p.shape[1]
    t_args = topk(p, data.draw(st.integers(1, vocab)))
    kls = [
        forward_kl(*t_args, *topk((1 - a) * q + a * p, vocab), vocab) for a in np.linspace(0, 1, 11)
    ]
    assert all((b <= a + 1e-9).all() for a, b in itertools.pairwise(kls))
    assert np.allclose(kls[-1], 0.0, atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(dists(), st.data())
def test_invariant_to_order_of_topk_entries(pq: tuple[F, F], data: st.DataObject) -> None:
    p, q = pq
    vocab = p.shape[1]
    t_ids, t_lp = topk(p, data.draw(st.integers(1, vocab)))
    s_ids, s_lp = topk(q, data.draw(st.integers(1, vocab)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    tp = np.array([rng.permutation(t_ids.shape[1]) for _ in range(t_ids.shape[0])])
    sp = np.array([rng.permutation(s_ids.shape[1]) for _ in range(s_ids.shape[0])])
    t2 = (np.take_along_axis(t_ids, tp, 1), np.take_along_axis(t_lp, tp, 1))
    s2 = (np.take_along_axis(s_ids, sp, 1), np.take_along_axis(s_lp, sp, 1))
    k = min(t_ids.shape[1], s_ids.shape[1])
    for fn in (forward_kl, reverse_kl, total_variation):
        # Equal up to rounding a different summation order may change: the terms of a sum can
        # cancel (reverse KL), so the bound is relative to the terms, not to the total. An
        # order-dependent bug would move the result by a whole term.
        want = fn(t_ids, t_lp, s_ids, s_lp, vocab)
        assert np.allclose(want, fn(*t2, *s2, vocab), rtol=1e-9, atol=1e-12)
    assert np.array_equal(
        topk_overlap(t_ids, t_lp, s_ids, s_lp, vocab, k), topk_overlap(*t2, *s2, vocab, k)
    )


def test_worked_example_with_imputation() -> None:
    """T={0:.5,1:.3,2:.1}, tail .1; S={2:.6,5:.2}: r=.2, imputed min(.2, .2/8)=.025."""
    t_ids, t_lp = np.array([[0, 1, 2]]), np.log([[0.5, 0.3, 0.1]])
    s_ids, s_lp = np.array([[2, 5]]), np.log([[0.6, 0.2]])
    want = (
        0.5 * math.log(0.5 / 0.025)
        + 0.3 * math.log(0.3 / 0.025)
        + 0.1 * math.log(0.1 / 0.6)
        + 0.1 * math.log(0.1 / 0.35)
    )
    assert forward_kl(t_ids, t_lp, s_ids, s_lp, 10)[0] == pytest.approx(want, rel=1e-12)
    assert total_variation(t_ids, t_lp, s_ids, s_lp, 10)[0] == pytest.approx(
        0.5 * (0.475 + 0.275 + 0.5 + 0.25), rel=1e-12
    )


def test_imputation_is_capped_by_smallest_reported_probability() -> None:
    """Reporting one unlikely token must not let the remainder flow to the teacher's tokens."""
    t_ids, t_lp = np.array([[0, 1]]), np.log([[0.6, 0.4]])
    honest = forward_kl(t_ids, t_lp, np.array([[0, 1]]), np.log([[0.6, 0.4]]), 4)
    hiding = forward_kl(t_ids, t_lp, np.array([[3]]), np.log([[1e-6]]), 4)
    # Uncapped, the hidden 1 - 1e-6 would spread as 1/3 each to tokens 0 and 1.
    assert hiding[0] > honest[0] + 10.0


def test_empty_student_row_spreads_all_mass_uniformly() -> None:
    t_ids, t_lp = np.array([[0]]), np.log([[0.5]])
    got = forward_kl(t_ids, t_lp, np.zeros((1, 0), dtype=np.int64), np.zeros((1, 0)), 4)
    want = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert got[0] == pytest.approx(want)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (float("nan"), "finite and <= 0"),
        (float("inf"), "finite and <= 0"),
        (float("-inf"), "finite and <= 0"),
        (0.01, "finite and <= 0"),
    ],
)
@pytest.mark.parametrize("side", ["teacher", "student"])
def test_rejects_nonfinite_and_positive_logprobs(bad: float, match: str, side: str) -> None:
    ids, lp = np.array([[0, 1]]), np.log([[0.6, 0.3]])
    broken = lp.copy()
    broken[0, 1] = bad
    args = (ids, broken, ids, lp) if side == "teacher" else (ids, lp, ids, broken)
    for fn in (forward_kl, reverse_kl, total_variation):
        with pytest.raises(ValueError, match=rf"{side}: logprobs must be {match}"):
            fn(*args, 4)


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=1.1e-6, max_value=1e6))
def test_rejects_any_positive_logprob_above_rounding_slack(pos: float) -> None:
    ids = np.array([[0, 1]])
    with pytest.raises(ValueError, match="teacher: logprobs must be finite and <= 0"):
        forward_kl(ids, np.array([[pos, -1.0]]), ids, np.array([[-0.5, -1.0]]), 4)


def test_rounding_positive_logprob_is_treated_as_zero() -> None:
    ids = np.array([[0]])
    assert forward_kl(ids, np.array([[1e-7]]), ids, np.array([[0.0]]), 4)[0] == 0.0


@pytest.mark.parametrize(
    ("t_ids", "s_ids", "match"),
    [
        ([[0, 4]], [[0, 1]], r"teacher: id outside \[0, 4\)"),
        ([[0, 1]], [[-1, 1]], r"student: id outside \[0, 4\)"),
        ([[0, 0]], [[0, 1]], "teacher: duplicate id"),
        ([[0, 1]], [[2, 2]], "student: duplicate id"),
        ([[0.0, 1.0]], [[0, 1]], "teacher: ids must be integers"),
    ],
)
def test_rejects_bad_ids(t_ids: object, s_ids: object, match: str) -> None:
    lp = np.log([[0.6, 0.3]])
    with pytest.raises(ValueError, match=match):
        forward_kl(np.array(t_ids), lp, np.array(s_ids), lp, 4)


def test_rejects_shape_mismatches() -> None:
    lp = np.log([[0.6, 0.3]])
    with pytest.raises(ValueError, match="must both be"):
        forward_kl(np.array([[0, 1]]), np.log([[0.6]]), np.array([[0, 1]]), lp, 4)
    with pytest.raises(ValueError, match="positions"):
        forward_kl(np.array([[0, 1]]), lp, np.array([[0, 1]] * 2), np.vstack([lp, lp]), 4)
    with pytest.raises(ValueError, match="vocab_size"):
        forward_kl(np.array([[0, 1]]), lp, np.array([[0, 1]]), lp, 0)


def test_topk_overlap_counts_shared_ids_and_checks_k() -> None:
    t_ids, t_lp = np.array([[0, 1, 2]]), np.log([[0.5, 0.3, 0.1]])
    s_ids, s_lp = np.array([[1, 2, 3]]), np.log([[0.5, 0.2, 0.1]])
    assert topk_overlap(t_ids, t_lp, s_ids, s_lp, 8, 1)[0] == 0.0
    assert topk_overlap(t_ids, t_lp, s_ids, s_lp, 8, 2)[0] == 0.5
    assert topk_overlap(t_ids, t_lp, s_ids, s_lp, 8, 3)[0] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="k must be in"):
        topk_overlap(t_ids, t_lp, s_ids, s_lp, 8, 4)


def test_divergence_stats_means_and_empty_answer() -> None:
    p = softmax(np.random.default_rng(0).normal(size=(5, 16)))
    q = softmax(np.random.default_rng(1).normal(size=(5, 16)))
    args = (*topk(p, 8), *topk(q, 6), 16)
    stats = divergence_stats(*args, overlap_k=10)
    assert stats.positions == 5
    assert stats.forward_kl == pytest.approx(forward_kl(*args).mean())
    assert stats.reverse_kl == pytest.approx(reverse_kl(*args).mean())
    assert stats.topk_overlap == pytest.approx(topk_overlap(*args, k=6).mean())
    empty = (np.zeros((0, 2), dtype=np.int64), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="no positions"):
        divergence_stats(*empty, *empty, 16, overlap_k=2)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.integers(1, 6))
def test_batched_stats_equal_answer_by_answer(seed: int, n_answers: int, k: int) -> None:
    """The validator scores a micro-batch in one pass: the same numbers as one by one."""
    rng = np.random.default_rng(seed)
    vocab = 40
    answers = []
    for _ in range(n_answers):
        n = int(rng.integers(1, 9))
        t_ids, t_lp = topk(softmax(rng.normal(size=(n, vocab)) * 2), 8)
        s_ids, s_lp = topk(softmax(rng.normal(size=(n, vocab)) * 2), k)
        answers.append((t_ids, t_lp, s_ids, s_lp))
    many = divergence_stats_many(answers, vocab, 5)
    for a, got in zip(answers, many, strict=True):
        want = divergence_stats(*a, vocab, 5)
        assert got.positions == want.positions
        for f in ("forward_kl", "reverse_kl", "total_variation", "topk_overlap"):
            assert getattr(got, f) == pytest.approx(getattr(want, f), rel=1e-12, abs=1e-15), f


def test_batched_stats_fall_back_and_still_raise_for_one_bad_answer() -> None:
    rng = np.random.default_rng(0)
    good = (
        *topk(softmax(rng.normal(size=(3, 20))), 4),
        *topk(softmax(rng.normal(size=(3, 20))), 4),
    )
    wide = (*good[:2], *topk(softmax(rng.normal(size=(3, 20))), 6))  # another student width
    many = divergence_stats_many([good, wide], 20, 3)
    assert many == [divergence_stats(*good, 20, 3), divergence_stats(*wide, 20, 3)]
    assert divergence_stats_many([], 20, 3) == []
    bad = (good[0], good[1], good[2], np.full((3, 4), np.nan))
    with pytest.raises(ValueError, match="student: logprobs must be finite"):
        divergence_stats_many([good, bad], 20, 3)
