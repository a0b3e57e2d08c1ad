"""Yuma consensus: one subnet epoch as the chain runs it today (sparse on-chain path).

Two engines behind one call:

* ``mode="exact"`` reproduces the chain's fixed-point arithmetic (I32F32/I64F64/I96F32: floored
  products, truncating quotients, division by zero -> 0, saturating casts) so the devnet's
  numbers equal a real node's. Pure Python ints; ~n·k work, fine for n <= 256.
* ``mode="fast"`` is the same algorithm in numpy float64 (same masks, same sparse drops, same
  u16 storage of bonds) for simulator sweeps; it agrees with exact to ~1e-6 away from ties.
  Rows may be given as :class:`SparseRows` (CSR arrays; the fast engine returns its bonds that
  way), so a chain of fast epochs never converts entries one by one.

The simulator can skip the sparse bookkeeping entirely with :func:`epoch_fast_dense`, which takes
dense matrices and returns a :class:`FastEpoch` whose ``bonds`` feed straight into the next call.

What the epoch does (research/yuma.md §1.3): activity cutoff -> stake threshold and
normalisation -> permits (the stored ones mask this epoch; the new top-k are only returned) ->
active stake -> weight masks (permit rows, diagonal except the owner, outdated, commit-reveal)
-> kappa-weighted-median consensus -> clipping -> validator trust, incentive -> bonds (Yuma3 with
or without liquid alpha, or Yuma2) -> dividends -> the server/validator emission split.
"""

from __future__ import annotations

from typing import Literal

from scoring.yuma_exact import run_exact
from scoring.yuma_fast import FastEpoch, epoch_fast_dense
from scoring.yuma_fast_sparse import run_fast
from scoring.yuma_rows import SparseRows
from scoring.yuma_types import EpochInputs, EpochResult, YumaParams, check_inputs

__all__ = [
    "EpochInputs",
    "EpochResult",
    "FastEpoch",
    "SparseRows",
    "YumaParams",
    "activity_cutoff",
    "epoch",
    "epoch_fast_dense",
]


def activity_cutoff(params: YumaParams) -> int:
    """Blocks after the last weight update during which a validator counts as active."""
    return max(1, params.activity_cutoff_factor * params.tempo // 1000)


def epoch(
    inputs: EpochInputs, params: YumaParams, mode: Literal["exact", "fast"] = "exact"
) -> EpochResult:
    """Run one epoch; raises ValueError on inconsistent inputs (lengths, uids, negative stake)."""
    weights, bonds = check_inputs(inputs, params)
    if mode == "exact":
        return run_exact(inputs, params)
    if mode == "fast":
        return run_fast(inputs, params, weights, bonds)
    raise ValueError(f"mode must be 'exact' or 'fast', got {mode!r}")
