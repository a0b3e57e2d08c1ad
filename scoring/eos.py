"""How likely the model is to stop, from what one top-k pass shows.

An engine that reads only each position's top-k and the given token (vLLM's prompt logprobs)
knows the probability of every EOS id that row lists, and only a bound on the others. With S the
listed EOS ids' probability, m the number of EOS ids the row does not list, p_k the row's k-th
probability and R the mass the row leaves unlisted: each unlisted EOS id is outside the top-k, so
it has at most p_k, and together they have at most R, hence

    S  <=  p(EOS set)  <=  B = S + min(m * p_k, R).

:func:`scoring.verify.check_eos` reads p(EOS set) only at positions whose token is not an EOS id,
and only to ask whether it reaches ``refuse_stop_eos_prob`` = q, which the config keeps at or
above ``EOS_RULE_MIN_PROB`` = 1/2. Where m = 0 the bound is exact. Where B < 1/2 <= q, the exact
value is below q too: same verdict. Only where m > 0 and B >= 1/2 can they disagree
(S < q <= B), and there (:meth:`EosBounds.undecided`) the engine must read the unlisted ids.

How rare that is: with no EOS id listed (S = 0), B >= 1/2 needs m * p_k >= 1/2 and R >= 1/2, so
the row holds k * p_k + R >= k / (2m) + 1/2, at most 1 only when k <= m. So with k > m, and in
particular with one EOS id and k >= 2, no position needs a lookup; with several EOS ids, only a
position where listed and unlisted EOS ids together may reach 1/2 does, where the model was
likely to stop and the answer went on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scoring.config import EOS_RULE_MIN_PROB

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Listed probabilities arrive as float32 logprobs; summing k + 1 of them may overshoot the true
# listed mass by ~1e-6. Adding this to the unlisted mass keeps R an upper bound.
MASS_SLACK = 1e-4


@dataclass(frozen=True)
class EosBounds:
    """Per position, what a top-k row says about the EOS set's probability (all [P])."""

    listed: FloatArray  # log S: the listed EOS ids' probability (-inf: none listed)
    upper: FloatArray  # log B, rounded up to a float32 (engines report float32); listed if m = 0
    unlisted: IntArray  # m: EOS ids the row does not list

    def undecided(self, token_ids: npt.ArrayLike, eos_token_ids: Sequence[int]) -> BoolArray:
        """Positions where the bound and the exact value could give different EOS verdicts for
        some allowed ``refuse_stop_eos_prob``: ids unlisted, B >= 1/2, and a token that is not
        an EOS id (the rules read the set only there)."""
        tok = np.asarray(token_ids, dtype=np.int64)
        is_eos = np.isin(tok, np.asarray(eos_token_ids, dtype=np.int64))
        reaches = self.upper.astype(np.float64) >= np.log(EOS_RULE_MIN_PROB)
        return np.asarray((self.unlisted > 0) & reaches & ~is_eos, dtype=np.bool_)


def eos_bounds(
    top_ids: npt.ArrayLike,
    top_logprobs: npt.ArrayLike,
    token_ids: npt.ArrayLike,
    target_logprobs: npt.ArrayLike,
    eos_token_ids: Sequence[int],
) -> EosBounds:
    """The bounds of the module docstring from rows of the top-k ([P, k], sorted descending)
    plus the given token and its logprob ([P]), which the row lists too."""
    ids = np.asarray(top_ids, dtype=np.int64)
    lps = np.asarray(top_logprobs, dtype=np.float64)
    tok = np.asarray(token_ids, dtype=np.int64)
    tgt = np.asarray(target_logprobs, dtype=np.float64)
    eos = np.unique(np.asarray(eos_token_ids, dtype=np.int64))
    if ids.ndim != 2 or lps.shape != ids.shape or not tok.shape == tgt.shape == ids.shape[:1]:
        raise ValueError(f"top {ids.shape}/{lps.shape}, tokens {tok.shape}/{tgt.shape} mismatch")
    n, k = ids.shape
    given_apart = ~(ids == tok[:, None]).any(axis=1)  # the given token outside the top-k
    row_ids = np.concatenate([ids, tok[:, None]], axis=1)
    row_lps = np.concatenate([lps, np.where(given_apart, tgt, -np.inf)[:, None]], axis=1)
    shown = np.concatenate([np.ones((n, k), bool), given_apart[:, None]], axis=1)
    is_eos = shown & np.isin(row_ids, eos)
    listed = np.logaddexp.reduce(np.where(is_eos, row_lps, -np.inf), axis=1)
    unlisted = (eos.size - is_eos.sum(axis=1)).astype(np.int64)
    rest = np.clip(1.0 - np.where(shown, np.exp(row_lps), 0.0).sum(axis=1), 0.0, 1.0)
    kth = np.exp(lps[:, -1]) if k else np.ones(n)  # no top-k: nothing bounds an id but R
    extra = np.minimum(unlisted * kth, np.minimum(rest + MASS_SLACK, 1.0))
    with np.errstate(divide="ignore"):
        bound = np.logaddexp(listed, np.log(extra)).astype(np.float32)
    # rounded up, so the float32 an engine reports still bounds the exact value
    upper = np.where(unlisted > 0, np.nextafter(bound, np.float32(np.inf)), listed)
    return EosBounds(listed=listed, upper=upper.astype(np.float64), unlisted=unlisted)
