"""The scoring constants a subnet owner publishes in ``subnet.toml`` (sections of ``SubnetConfig``).

Each field is declared with :func:`scoring.params.param` (help and range) and every instance is
validated on construction, cross-field rules included, so a bad ``subnet.toml`` fails on load
naming the key. Defaults are chosen for the tiny-world localnet (2-layer students whose forward KL
to the teacher is ~0.04 nats/position distilled, ~0.1 undistilled, ~3 untrained) and are sane
starting points for real models. Verification tolerances are measured, per precision, by
``subnet validator calibrate`` on honest runs (docs/calibration.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from scoring.params import ParamError, param, validate

# The least ``refuse_stop_eos_prob`` allowed; scoring/eos.py proves the one-pass EOS bound exact
# for the EOS rules from it.
EOS_RULE_MIN_PROB = 0.5


@dataclass(frozen=True)
class ScoreConfig:
    """How one answer's distillation, reference and speed sub-scores combine."""

    w_kl: float = param(0.6, "weight of the distillation score s_kl", lo=0.0, hi=1.0)
    w_ref: float = param(0.3, "weight of the reference score s_ref", lo=0.0, hi=1.0)
    w_speed: float = param(0.1, "weight of the speed score s_speed", lo=0.0, hi=1.0)
    # exp(-0.05/0.15) = 0.72 (distilled), exp(-0.125/0.15) = 0.43 (undistilled), ~0 (untrained).
    tau_kl: float = param(
        0.15, "KL scale in nats/position: s_kl = exp(-(fkl + rkl_weight*rkl) / tau_kl)", lo=1e-6
    )
    rkl_weight: float = param(
        0.25, "weight of reverse KL added to forward KL (guards mode-covering games)", lo=0.0
    )
    overlap_weight: float = param(
        0.0, "share of s_kl taken by the top-k overlap: s_kl *= 1 - w + w*overlap", lo=0.0, hi=1.0
    )
    overlap_k: int = param(10, "k of the top-k overlap term", lo=1, hi=1000)
    tau_ref: float = param(
        1.0,
        "nats/token: s_ll = exp(min(0, miner mean loglik - reference mean loglik) / tau_ref)",
        lo=1e-6,
    )
    correct_weight: float = param(
        0.5, "share of s_ref from ground-truth correctness when the task has one", lo=0.0, hi=1.0
    )
    degenerate_ngram: int = param(4, "n of the repeated n-gram degeneracy check", lo=1, hi=64)
    degenerate_frac: float = param(
        0.5, "answers whose repeated n-gram share exceeds this are DEGENERATE", lo=0.0, hi=1.0
    )
    degenerate_min_tokens: int = param(
        16, "answers shorter than this are never called DEGENERATE", lo=1, hi=1_000_000
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.w_kl + self.w_ref + self.w_speed <= 0:
            raise ParamError("w_kl", "w_kl + w_ref + w_speed must be > 0")


@dataclass(frozen=True)
class VerifyConfig:
    """Format gate and spot-check verification of claimed distributions (to be calibrated)."""

    # 0.5 (scoring/economics.py, README "cheating economics"): with 4 answers a round and a
    # 20-round suspension, fabricating any fraction of answers earns less than honesty for every
    # miner scoring above 0.02 honestly (0.15 at 0.1), and a miner fabricating on the answers
    # it guesses unchecked is caught on a quarter of its answers, the most any guess allows.
    spot_check_fraction: float = param(
        0.5,
        "fraction of answers recomputed with the miner's committed model (drawn from a secret)",
        lo=0.0,
        hi=1.0,
    )
    # Calibrated (docs/calibration.md) per precision of the recompute, which is the committed
    # checkpoint's dtype. float32: honest claims recomputed across hf/vLLM and batch sizes differ
    # by <= 5e-7 (1e-4 is the calibrator's floor), a wrong model by >= 5.8e-4. 16-bit floats
    # (bfloat16, float16): honest error reaches 0.0101 (`calibrate --dtype bfloat16`).
    max_mean_abs_dp: float = param(
        0.0001,
        "float32/64 models: max mean |claimed p - recomputed p| of the sampled tokens",
        lo=0.0,
        hi=1.0,
    )
    min_topk_agreement: float = param(
        0.5,
        "float32/64 models: min mean overlap of claimed and recomputed top-k ids",
        lo=0.0,
        hi=1.0,
    )
    max_mean_abs_dp_half: float = param(
        0.0164, "bfloat16/float16 models: max_mean_abs_dp", lo=0.0, hi=1.0
    )
    min_topk_agreement_half: float = param(
        0.467, "bfloat16/float16 models: min_topk_agreement", lo=0.0, hi=1.0
    )
    agreement_k: int = param(5, "k of the claimed-vs-recomputed top-k agreement", lo=1, hi=1000)
    # Even a uniform distribution over 1M tokens gives -13.8; -20 is never sampled honestly.
    min_sampled_logprob: float = param(
        -20.0, "a sampled token below this logprob under the committed model is FABRICATED", hi=0.0
    )
    max_rank: int = param(
        0, "a sampled token ranked worse than this is FABRICATED (0 = off)", lo=0, hi=10**9
    )
    # Honest sampling at temperature <= 1 continues past p(EOS) >= 0.9 three times w.p. <= 1e-3.
    # At least EOS_RULE_MIN_PROB: a top-k row then decides the rule for an EOS set it does not
    # fully list wherever its bound stays below 1/2, so engines look EOS ids up only where the
    # bound reaches 1/2 (scoring/eos.py: never with one EOS id and k >= 2).
    refuse_stop_eos_prob: float = param(
        0.9, "p(EOS) at which continuing counts toward REFUSE_STOP", lo=EOS_RULE_MIN_PROB, hi=1.0
    )
    refuse_stop_count: int = param(
        3, "this many continuations past refuse_stop_eos_prob -> REFUSE_STOP", lo=1, hi=10**6
    )
    premature_eos_logprob: float = param(
        -12.0, "a final EOS with logprob below this is PREMATURE_STOP", hi=0.0
    )
    max_topk_mass: float = param(
        1.001, "format gate: max total probability of one top-k row (float slack)", lo=1.0, hi=2.0
    )

    def __post_init__(self) -> None:
        validate(self)

    def for_dtype(self, dtype: str) -> VerifyConfig:
        """The tolerances for a recompute in ``dtype``: 16-bit floats round far more than
        float32, so one tolerance either fails honest bf16 miners or lets float32 liars pass."""
        if is_full_precision(dtype):
            return self
        return dataclasses.replace(
            self,
            max_mean_abs_dp=self.max_mean_abs_dp_half,
            min_topk_agreement=self.min_topk_agreement_half,
        )


def is_full_precision(dtype: str) -> bool:
    """float32/float64 (the tighter tolerances); anything else is treated as 16-bit."""
    return dtype.removeprefix("torch.") in ("float32", "float64", "float", "double")


@dataclass(frozen=True)
class SpeedConfig:
    """Speed relative to the best valid miner of the round."""

    ttft_weight: float = param(
        0.3, "share of s_speed from time-to-first-token (rest: tokens/s)", lo=0.0, hi=1.0
    )
    min_seconds: float = param(
        1e-3, "timings are floored at this many seconds (clock resolution)", lo=1e-9, hi=10.0
    )

    def __post_init__(self) -> None:
        validate(self)


TRANSFORMS = ("power", "top_n", "wta")


@dataclass(frozen=True)
class WeightsConfig:
    """Per-miner EMA and the transform from EMA to chain weights."""

    # 0.2: a step's score has half its weight after ~3 steps; a new miner reaches 89% in 10.
    ema_alpha: float = param(0.2, "EMA step: ema = alpha*score + (1-alpha)*ema", lo=1e-6, hi=1.0)
    transform: str = param("power", "EMA -> weights transform", choices=TRANSFORMS)
    power: float = param(2.0, "exponent applied to EMA before normalising", lo=0.0, hi=64.0)
    top_n: int = param(10, "top_n: only the N best miners get weight", lo=1, hi=65535)
    wta_share: float = param(
        0.8, "wta: the winner's share; the rest goes to the others by power", lo=0.0, hi=1.0
    )
    dethrone_margin: float = param(
        0.05, "wta: a challenger must beat the winner's EMA by this factor", lo=0.0, hi=10.0
    )
    burn_share: float = param(0.0, "share of weight sent to the owner uid", lo=0.0, hi=1.0)
    min_score: float = param(
        0.0, "miners whose EMA is not above this get no weight", lo=0.0, hi=1.0
    )
    # A proven lie (a claim the committed model contradicts) costs the round, the EMA built so far
    # and this many further rounds: lying on the answers a spot check might miss cannot pay.
    lie_penalty_steps: int = param(
        20, "rounds a hotkey earns nothing after a proven lie (its EMA is reset)", lo=0, hi=100000
    )

    def __post_init__(self) -> None:
        validate(self)
