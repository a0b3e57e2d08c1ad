"""Comparing two engines' greedy answers where float rounding may legitimately part them."""

from __future__ import annotations

import numpy as np


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
