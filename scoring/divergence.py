"""Divergences between a teacher's and a student's reported top-k next-token distributions.

Both sides report, per position, only their top-k ids and logprobs. Every divergence here is
computed on one shared support: the teacher's reported set T plus one tail bucket ("everything
else"). The student's probability for each t in T is its reported one when it reported t; if it
did not, it is imputed from the student's unreported remainder, spread evenly over the vocabulary
it did not report and never more than its smallest reported probability (a token it did not
report cannot be likelier than one it did). Per position, with eps = 1e-10:

    p_t = exp(teacher logprob),          p_tail = max(0, 1 - sum_T p_t)
    r   = max(0, 1 - sum_S q_s)          (student mass it did not report)
    q_t = reported q_t if t in S else min(min_S q_s, r / (V - |S|))
    q_tail = max(eps, 1 - sum_T q_t)
    KL(p||q) = sum_T p_t log(p_t / max(q_t, eps)) + p_tail log(p_tail / q_tail)

A zero p term contributes 0; natural log. When the student reports every teacher token this is
exactly the KL between the two distributions coarse-grained to T ∪ {tail}; otherwise the imputed
q_t is an estimate (so, e.g., monotonicity under mixing toward the teacher holds only up to how
well the even spread guesses the student's unreported tokens).

Inputs are arrays ``[P, K]`` (teacher) and ``[P, k]`` (student); outputs are per position
``[P]``. Order within a row does not matter. These
functions raise ``ValueError`` on malformed input (NaN, inf, logprob > 0, ids outside the
vocabulary, duplicate ids in a row, shape mismatch): callers run the format gate first, so a
raise here is a bug, not a hostile miner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

EPS = 1e-10
# Logprobs in (0, LOGPROB_SLACK] are float rounding of a log-softmax (an engine computing
# logits - logsumexp in low precision), not an attack: treated as 0. Larger ones are rejected.
LOGPROB_SLACK = 1e-6


@dataclass(frozen=True)
class _Support:
    """Teacher and student mass on the shared support T ∪ {tail}, per position."""

    p: FloatArray  # [P, K]
    log_p: FloatArray  # [P, K]
    p_tail: FloatArray  # [P]
    q: FloatArray  # [P, K], before the eps floor
    log_q: FloatArray  # [P, K], log max(q, eps)
    q_tail: FloatArray  # [P], already >= eps


def check_topk(
    ids: npt.ArrayLike, logprobs: npt.ArrayLike, vocab_size: int, name: str
) -> tuple[IntArray, FloatArray]:
    """Validate one side's ``[P, k]`` top-k arrays; return them as int64/float64 copies.

    Raises ``ValueError`` naming ``name`` and the first offending position.
    """
    id_arr = np.asarray(ids)
    lp_arr = np.asarray(logprobs)
    if id_arr.ndim != 2 or lp_arr.shape != id_arr.shape:
        raise ValueError(
            f"{name}: ids and logprobs must both be [P, k], got {id_arr.shape} and {lp_arr.shape}"
        )
    if id_arr.size and id_arr.dtype.kind not in "iu":
        raise ValueError(f"{name}: ids must be integers, got dtype {id_arr.dtype}")
    if lp_arr.size and lp_arr.dtype.kind not in "fiu":
        raise ValueError(f"{name}: logprobs must be numbers, got dtype {lp_arr.dtype}")
    id64 = id_arr.astype(np.int64)
    lp64 = lp_arr.astype(np.float64)
    bad = (id64 < 0) | (id64 >= vocab_size)
    if bad.any():
        pos = int(np.argwhere(bad)[0][0])
        raise ValueError(f"{name}: id outside [0, {vocab_size}) at position {pos}")
    bad = ~np.isfinite(lp64) | (lp64 > LOGPROB_SLACK)
    if bad.any():
        pos = int(np.argwhere(bad)[0][0])
        raise ValueError(
            f"{name}: logprobs must be finite and <= 0, got {lp64[bad][0]!r} at position {pos}"
        )
    if id64.shape[1] > 1:
        srt = np.sort(id64, axis=1)
        dup = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
        if dup.any():
            raise ValueError(f"{name}: duplicate id in the top-k row at position {np.argmax(dup)}")
    return id64, np.minimum(lp64, 0.0)


def _support(
    teacher_ids: npt.ArrayLike,
    teacher_logprobs: npt.ArrayLike,
    student_ids: npt.ArrayLike,
    student_logprobs: npt.ArrayLike,
    vocab_size: int,
) -> _Support:
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    t_ids, t_lp = check_topk(teacher_ids, teacher_logprobs, vocab_size, "teacher")
    s_ids, s_lp = check_topk(student_ids, student_logprobs, vocab_size, "student")
    n_pos, k_s = s_ids.shape
    if t_ids.shape[0] != n_pos:
        raise ValueError(f"teacher has {t_ids.shape[0]} positions, student has {n_pos}")

    # Match each teacher id to the student's row by a sorted search over row-offset ids.
    offset = np.arange(n_pos, dtype=np.int64)[:, None] * vocab_size
    s_flat = (s_ids + offset).ravel()
    order = np.argsort(s_flat, kind="stable")
    s_sorted = s_flat[order]
    t_flat = (t_ids + offset).ravel()
    if s_sorted.size:
        idx = np.minimum(np.searchsorted(s_sorted, t_flat), s_sorted.size - 1)
        found = (s_sorted[idx] == t_flat).reshape(t_ids.shape)
        matched_lp = s_lp.ravel()[order][idx].reshape(t_ids.shape)
    else:
        found = np.zeros(t_ids.shape, dtype=bool)
        matched_lp = np.zeros(t_ids.shape, dtype=np.float64)

    q_s = np.exp(s_lp)
    rest = np.maximum(0.0, 1.0 - q_s.sum(axis=1))
    min_s = q_s.min(axis=1) if k_s else np.full(n_pos, np.inf)
    unreported = vocab_size - k_s
    spread = rest / unreported if unreported > 0 else np.zeros(n_pos)
    imputed = np.minimum(min_s, spread)  # [P]

    q = np.where(found, np.exp(matched_lp), imputed[:, None])
    with np.errstate(divide="ignore"):
        log_q = np.where(found, matched_lp, np.log(imputed)[:, None])
    log_q = np.maximum(log_q, np.log(EPS))
    p = np.exp(t_lp)
    return _Support(
        p=p,
        log_p=t_lp,
        p_tail=np.maximum(0.0, 1.0 - p.sum(axis=1)),
        q=q,
        log_q=log_q,
        q_tail=np.maximum(EPS, 1.0 - q.sum(axis=1)),
    )


def _xlogy_ratio(x: FloatArray, log_x: FloatArray, log_y: FloatArray) -> FloatArray:
    """x * (log x - log y), with 0 where x == 0 (the 0 log 0 = 0 convention)."""
    pos = x > 0
    return np.where(pos, x * (np.where(pos, log_x, 0.0) - log_y), 0.0)


def _tail_log(x: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore"):
        return np.asarray(np.log(np.maximum(x, 0.0)), dtype=np.float64)


def forward_kl(
    teacher_ids: npt.ArrayLike,
    teacher_logprobs: npt.ArrayLike,
    student_ids: npt.ArrayLike,
    student_logprobs: npt.ArrayLike,
    vocab_size: int,
) -> FloatArray:
    """KL(teacher || student) per position on T ∪ {tail}, in nats (see the module docstring).

    Clamped at 0: float rounding, the eps floor and a reported top-k mass a hair over 1 can
    push the sum a few 1e-9 below 0, and a negative divergence must never score above a perfect
    match.
    """
    return _fkl(_support(teacher_ids, teacher_logprobs, student_ids, student_logprobs, vocab_size))


def _fkl(s: _Support) -> FloatArray:
    body = _xlogy_ratio(s.p, s.log_p, s.log_q).sum(axis=1)
    tail = _xlogy_ratio(s.p_tail, _tail_log(s.p_tail), np.log(s.q_tail))
    return np.asarray(np.maximum(body + tail, 0.0), dtype=np.float64)


def reverse_kl(
    teacher_ids: npt.ArrayLike,
    teacher_logprobs: npt.ArrayLike,
    student_ids: npt.ArrayLike,
    student_logprobs: npt.ArrayLike,
    vocab_size: int,
) -> FloatArray:
    """KL(student || teacher) per position on the same support and imputation as forward_kl.

    The teacher's probabilities are floored at eps too (its tail can be 0 when its top-K holds
    all its mass). Mode-seeking: it punishes student mass where the teacher has little.
    """
    return _rkl(_support(teacher_ids, teacher_logprobs, student_ids, student_logprobs, vocab_size))


def _rkl(s: _Support) -> FloatArray:
    log_p = np.maximum(s.log_p, np.log(EPS))
    body = _xlogy_ratio(s.q, s.log_q, log_p).sum(axis=1)
    tail = s.q_tail * (np.log(s.q_tail) - np.log(np.maximum(s.p_tail, EPS)))
    return np.asarray(np.maximum(body + tail, 0.0), dtype=np.float64)


def total_variation(
    teacher_ids: npt.ArrayLike,
    teacher_logprobs: npt.ArrayLike,
    student_ids: npt.ArrayLike,
    student_logprobs: npt.ArrayLike,
    vocab_size: int,
) -> FloatArray:
    """Half the L1 distance per position on T ∪ {tail}; in [0, 1] up to rounding."""
    return _tv(_support(teacher_ids, teacher_logprobs, student_ids, student_logprobs, vocab_size))


def _tv(s: _Support) -> FloatArray:
    body = np.abs(s.p - s.q).sum(axis=1)
    return np.asarray(0.5 * (body + np.abs(s.p_tail - s.q_tail)), dtype=np.float64)


def _topk_sets(ids: IntArray, logprobs: FloatArray, k: int) -> IntArray:
    """Ids of the k most probable entries per row, ties broken by smaller id (order-free)."""
    order = np.lexsort((ids, -logprobs), axis=1)[:, :k]
    return np.take_along_axis(ids, order, axis=1)


def topk_overlap(
    teacher_ids: npt.ArrayLike,
    teacher_logprobs: npt.ArrayLike,
    student_ids: npt.ArrayLike,
    student_logprobs: npt.ArrayLike,
    vocab_size: int,
    k: int,
) -> FloatArray:
    """|top-k(teacher) ∩ top-k(student)| / k per position, in [0, 1].

    ``k`` must not exceed either side's width. Ties at the k-th place are broken by the smaller
    id, so the result does not depend on the order of entries in a row.
    """
    t_ids, t_lp = check_topk(teacher_ids, teacher_logprobs, vocab_size, "teacher")
    s_ids, s_lp = check_topk(student_ids, student_logprobs, vocab_size, "student")
    if t_ids.shape[0] != s_ids.shape[0]:
        raise ValueError(f"teacher has {t_ids.shape[0]} positions, student has {s_ids.shape[0]}")
    if not 1 <= k <= min(t_ids.shape[1], s_ids.shape[1]):
        raise ValueError(
            f"k must be in [1, {min(t_ids.shape[1], s_ids.shape[1])}] for these widths, got {k}"
        )
    t_top = _topk_sets(t_ids, t_lp, k)
    s_top = _topk_sets(s_ids, s_lp, k)
    hits = (t_top[:, :, None] == s_top[:, None, :]).any(axis=2).sum(axis=1)
    return np.asarray(hits / k, dtype=np.float64)


@dataclass(frozen=True)
class DivergenceStats:
    """Means over an answer's positions, the inputs of the distillation score."""

    forward_kl: float
    reverse_kl: float
    total_variation: float
    topk_overlap: float
    positions: int


def divergence_stats(
    teacher_ids: npt.ArrayLike,
    teacher_logprobs: npt.ArrayLike,
    student_ids: npt.ArrayLike,
    student_logprobs: npt.ArrayLike,
    vocab_size: int,
    overlap_k: int,
) -> DivergenceStats:
    """All four measures averaged over positions; ``overlap_k`` is clipped to both widths."""
    args = (teacher_ids, teacher_logprobs, student_ids, student_logprobs, vocab_size)
    support = _support(*args)
    fkl = _fkl(support)
    if fkl.size == 0:
        raise ValueError("an answer with no positions has no divergence")
    widths = min(np.shape(teacher_ids)[1], np.shape(student_ids)[1])
    k = min(overlap_k, widths)
    overlap = float(topk_overlap(*args, k=k).mean()) if k >= 1 else 0.0
    return DivergenceStats(
        forward_kl=float(fkl.mean()),
        reverse_kl=float(_rkl(support).mean()),
        total_variation=float(_tv(support).mean()),
        topk_overlap=overlap,
        positions=int(fkl.size),
    )


def divergence_stats_many(
    answers: Sequence[tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike, npt.ArrayLike]],
    vocab_size: int,
    overlap_k: int,
) -> list[DivergenceStats]:
    """:func:`divergence_stats` of many answers in one pass.

    Each answer is ``(teacher_ids, teacher_logprobs, student_ids, student_logprobs)``. Every
    measure is position-wise, so the positions of all answers are stacked into one array per
    side and the per-answer means are segment means (``np.add.reduceat``): the cost is a few
    numpy calls for the whole batch instead of a few dozen per answer. Answers must share the
    teacher's and the student's top-k widths (the format gate asks one k of every miner);
    otherwise, or if any row is malformed, they are computed one by one (a malformed answer
    still raises for itself).
    """
    if not answers:
        return []
    lengths = np.array([np.shape(a[0])[0] for a in answers], dtype=np.int64)
    widths = {(np.shape(a[0])[1], np.shape(a[2])[1]) for a in answers if np.ndim(a[0]) == 2}
    if len(widths) != 1 or (lengths == 0).any() or any(np.ndim(a[2]) != 2 for a in answers):
        return [divergence_stats(*a, vocab_size, overlap_k) for a in answers]
    t_ids, t_lp, s_ids, s_lp = (np.concatenate([a[i] for a in answers]) for i in range(4))
    try:
        support = _support(t_ids, t_lp, s_ids, s_lp, vocab_size)
        k = min(overlap_k, *widths.pop())
        args = (t_ids, t_lp, s_ids, s_lp, vocab_size)
        overlap = topk_overlap(*args, k=k) if k >= 1 else np.zeros(len(t_ids))
    except ValueError:
        return [divergence_stats(*a, vocab_size, overlap_k) for a in answers]
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    per = np.stack([_fkl(support), _rkl(support), _tv(support), overlap])
    means = np.add.reduceat(per, starts, axis=1) / lengths
    return [
        DivergenceStats(float(f), float(r), float(t), float(o), int(n))
        for f, r, t, o, n in zip(*means.tolist(), lengths.tolist(), strict=True)
    ]
