"""Comparing two engines where float rounding may legitimately part their greedy answers, and
where vLLM's one-pass score reports a bound on the EOS set's logprob instead of its value."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scoring.config import EOS_RULE_MIN_PROB
from scoring.eos import eos_bounds
from subnet.engine import Scored


def assert_same_greedy_path(
    ref_tokens: np.ndarray, ref_top_logprobs: np.ndarray, other_tokens: np.ndarray, bound: float
) -> int:
    """Tokens equal up to the first near tie of the reference's top two (within ``2 * bound``
    either engine may pick either token there, and the paths part); returns how many positions
    were compared. A difference anywhere else fails."""
    for j, (a, b) in enumerate(zip(ref_tokens, other_tokens, strict=False)):
        if a != b:
            gap = float(ref_top_logprobs[j, 0] - ref_top_logprobs[j, 1])
            assert gap <= 2 * bound, f"position {j}: {a} vs {b}, top-2 gap {gap:.2e}"
            return j
    assert len(ref_tokens) == len(other_tokens)
    return len(ref_tokens)


def eos_gap_where_exact(
    exact: Scored, one_pass: Scored, completion: np.ndarray, eos_ids: Sequence[int], bound: float
) -> float:
    """Largest |Δ EOS-set logprob| where ``one_pass`` (vLLM) reports it exactly (every EOS id
    listed, or looked up where its bound reaches 1/2: scoring/eos.py); elsewhere asserts it is
    an upper bound of ``exact`` (within ``bound``) that stays below 1/2 wherever the EOS rules
    read it (a token that is not an EOS id; at an EOS token they read the token's own logprob)."""
    b = eos_bounds(
        one_pass.top_ids, one_pass.top_logprobs, completion, one_pass.target_logprobs, eos_ids
    )
    at = (b.unlisted == 0) | b.undecided(completion, eos_ids)
    read = ~np.isin(np.asarray(completion), np.asarray(eos_ids))
    assert (one_pass.eos_logprobs[~at] >= exact.eos_logprobs[~at] - bound).all()
    assert (one_pass.eos_logprobs[~at & read] < np.log(EOS_RULE_MIN_PROB)).all()
    return float(np.abs(exact.eos_logprobs - one_pass.eos_logprobs)[at].max(initial=0.0))
