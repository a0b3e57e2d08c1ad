"""Agreement of an answer with the teacher's reference: likelihood, correctness, degeneracy.

The teacher scores the miner's tokens by teacher forcing (one logprob per token) and the same for
its own reference answer to the same prompt. An answer at least as likely under the teacher as
the teacher's own answer gets full likelihood credit; less likely answers decay exponentially in
the per-token gap. Likelihood alone rewards loops (a repeated phrase is very likely), so loops are
caught separately by the repeated n-gram share.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from scoring.config import ScoreConfig


def mean_loglik(target_logprobs: npt.ArrayLike) -> float:
    """Mean teacher logprob per token (nats); raises ``ValueError`` if empty or non-finite."""
    lps = np.asarray(target_logprobs, dtype=np.float64)
    if lps.ndim != 1 or lps.size == 0:
        raise ValueError(f"target_logprobs must be a non-empty [P] array, got shape {lps.shape}")
    if not np.isfinite(lps).all():
        raise ValueError("target_logprobs must be finite")
    return float(lps.mean())


def likelihood_score(
    miner_logprobs: npt.ArrayLike, reference_logprobs: npt.ArrayLike, tau_ref: float
) -> float:
    """``exp(min(0, mean_ll(miner) - mean_ll(reference)) / tau_ref)`` in (0, 1]."""
    gap = mean_loglik(miner_logprobs) - mean_loglik(reference_logprobs)
    return float(np.exp(min(0.0, gap) / tau_ref))


def correctness(
    token_ids: npt.ArrayLike, answer_ids: npt.ArrayLike, eos_token_ids: Sequence[int]
) -> float:
    """1.0 if the answer (a final EOS, any of the ids, stripped) begins with the ground-truth
    ids, else 0.0.

    Prefix, not substring: a substring test pays an answer that lists every candidate. Tasks
    whose truth needs parsing (numbers with formatting, multiple forms) judge it in text and pass
    their own 0/1 to :func:`reference_score` instead.
    """
    tok = np.asarray(token_ids, dtype=np.int64)
    ans = np.asarray(answer_ids, dtype=np.int64)
    if ans.ndim != 1 or ans.size == 0:
        raise ValueError("answer_ids must be a non-empty [n] array")
    if tok.size and int(tok[-1]) in eos_token_ids:
        tok = tok[:-1]
    return float(tok.size >= ans.size and bool((tok[: ans.size] == ans).all()))


def repeated_ngram_fraction(token_ids: npt.ArrayLike, n: int) -> float:
    """Share of the answer's n-grams that already occurred earlier in it, in [0, 1).

    0 for answers with fewer than ``n + 1`` tokens. A k-token loop repeated to fill P tokens
    scores (P - n + 1 - k) / (P - n + 1), close to 1.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    tok = np.asarray(token_ids, dtype=np.int64)
    count = tok.size - n + 1
    if count < 2:
        return 0.0
    grams = np.lib.stride_tricks.sliding_window_view(tok, n)
    _, first = np.unique(grams, axis=0, return_index=True)
    return float((count - first.size) / count)


def is_degenerate(token_ids: npt.ArrayLike, cfg: ScoreConfig) -> bool:
    """Long enough to judge and its repeated n-gram share exceeds ``cfg.degenerate_frac``."""
    tok = np.asarray(token_ids)
    if tok.size < cfg.degenerate_min_tokens:
        return False
    return repeated_ngram_fraction(tok, cfg.degenerate_ngram) > cfg.degenerate_frac


def reference_score(s_likelihood: float, correct: float | None, cfg: ScoreConfig) -> float:
    """s_ref: likelihood credit, mixed with correctness when the task has a ground truth.

    ``(1 - w) * s_likelihood + w * correct`` with ``w = cfg.correct_weight``; ``correct`` None
    (no ground truth) gives ``s_likelihood``.
    """
    for name, v in (("s_likelihood", s_likelihood), ("correct", correct)):
        if v is not None and not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {v!r}")
    if correct is None:
        return s_likelihood
    w = cfg.correct_weight
    return (1.0 - w) * s_likelihood + w * correct
