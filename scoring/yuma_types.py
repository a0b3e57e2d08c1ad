"""Inputs, parameters and results of one Yuma epoch (shared by the exact and fast engines).

Parameters are the raw on-chain integers, exactly as stored, so the devnet can hand its storage
over unchanged and an owner's subnet.toml uses the numbers btcli shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from scoring.params import param, validate
from scoring.yuma_rows import SparseRows, as_rows

U16 = 65535


@dataclass(frozen=True)
class YumaParams:
    """Subnet hyperparameters read by the epoch (raw on-chain integers)."""

    kappa: int = param(32767, "consensus quantile, u16/65535 (root only)", lo=0, hi=U16)
    bonds_penalty: int = param(65535, "how much clipping hits bonds, u16/65535", lo=0, hi=U16)
    bonds_moving_avg: int = param(
        900_000, "bond EMA memory in parts per million (alpha = 1 - x/1e6)", lo=0, hi=1_000_000
    )
    yuma3_enabled: bool = param(True, "Yuma3 bonds/dividends (else the Yuma2 path)")
    liquid_alpha_enabled: bool = param(False, "per-entry sigmoid EMA alpha (Yuma3 only)")
    alpha_low: int = param(45875, "liquid alpha lower bound, u16/65535", lo=0, hi=U16)
    alpha_high: int = param(58982, "liquid alpha upper bound, u16/65535", lo=0, hi=U16)
    alpha_sigmoid_steepness: int = param(
        1000, "liquid alpha sigmoid steepness, i16 (/100)", lo=-32768, hi=32767
    )
    activity_cutoff_factor: int = param(
        13889, "activity cutoff in per-mille of tempo", lo=0, hi=2**32 - 1
    )
    tempo: int = param(360, "blocks per epoch", lo=0, hi=U16)
    max_validators: int = param(64, "validator permits: top-k stake", lo=0, hi=U16)
    stake_threshold: int = param(0, "minimum stake (rao) to count at all", lo=0, hi=2**64 - 1)
    commit_reveal_enabled: bool = param(False, "apply the commit-reveal column mask")


Row = Sequence[tuple[int, int]]


@dataclass(frozen=True)
class EpochInputs:
    """Chain state the epoch reads, per uid (length n everywhere)."""

    block: int
    stake: Sequence[int]  # rao per uid (alpha + tao*tao_weight already combined)
    weights: Sequence[Row]  # per uid i: [(dest uid, u16 as stored)], row order as submitted
    bonds: Sequence[Row]  # per uid: stored u16 bonds [(uid, u16)]
    last_update: Sequence[int]
    block_at_registration: Sequence[int]
    validator_permit: Sequence[bool]  # stored (previous epoch's) permits
    owner_uid: int | None = None
    commit_blocks: Sequence[int | None] | None = None  # earliest unexpired commit block per uid
    last_mechanism_step_block: int = 0  # LMS
    emission: int = 0  # rao to distribute this epoch (E)

    @property
    def n(self) -> int:
        return len(self.stake)


@dataclass(frozen=True)
class EpochResult:
    """Per-uid outputs (length n); floats are the fixed-point values, ``*_u16`` the stored form."""

    active: tuple[bool, ...]
    stake_weight: tuple[float, ...]
    validator_permit: tuple[bool, ...]
    consensus: tuple[float, ...]
    validator_trust: tuple[float, ...]
    incentive: tuple[float, ...]
    dividends: tuple[float, ...]
    bonds: Sequence[tuple[tuple[int, int], ...]]  # exact: tuples; fast: SparseRows
    server_emission: tuple[int, ...]
    validator_emission: tuple[int, ...]
    incentive_u16: tuple[int, ...] = ()
    dividends_u16: tuple[int, ...] = ()
    consensus_u16: tuple[int, ...] = ()
    validator_trust_u16: tuple[int, ...] = ()
    stake_weight_u16: tuple[int, ...] = ()
    active_stake: tuple[float, ...] = ()  # A: what weighs in consensus and dividends (not stored)


@lru_cache(maxsize=64)
def _validate(params: YumaParams) -> None:
    """``validate`` once per distinct parameter set (frozen, so a check holds)."""
    validate(params)


def check_inputs(inputs: EpochInputs, params: YumaParams) -> tuple[SparseRows, SparseRows]:
    """Raise ValueError naming the first inconsistency; the epoch never guesses.

    Returns the weights and bonds as checked :class:`SparseRows` (converted once, for the fast
    engine).
    """
    _validate(params)
    n = inputs.n
    for name in ("last_update", "block_at_registration", "validator_permit"):
        got = len(getattr(inputs, name))
        if got != n:
            raise ValueError(f"{name}: expected length {n} (len(stake)), got {got}")
    if inputs.commit_blocks is not None and len(inputs.commit_blocks) != n:
        raise ValueError(f"commit_blocks: expected length {n}, got {len(inputs.commit_blocks)}")
    for name in ("stake", "last_update", "block_at_registration"):
        values = getattr(inputs, name)
        if n and min(values) < 0:  # the loop below only runs to name the culprit
            i = next(i for i, v in enumerate(values) if v < 0)
            raise ValueError(f"{name}[{i}] is negative ({values[i]})")
    if inputs.block < 0 or inputs.emission < 0 or inputs.last_mechanism_step_block < 0:
        raise ValueError("block, emission and last_mechanism_step_block must be >= 0")
    if inputs.owner_uid is not None and not 0 <= inputs.owner_uid < n:
        raise ValueError(f"owner_uid {inputs.owner_uid} out of range 0..{n - 1}")
    return as_rows("weights", inputs.weights, n), as_rows("bonds", inputs.bonds, n)
