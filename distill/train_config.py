"""The trainer's settings and result (no torch here, so the CLI can list flags cheaply)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from subnet.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    # Optimisation
    steps: int = 800
    batch: int = 32  # sequences per step, over all processes (the global batch)
    lr: float = 3e-3  # peak; linear warmup, cosine decay to lr * min_lr_frac
    warmup: int = 50
    min_lr_frac: float = 0.1
    weight_decay: float = 0.01
    beta2: float = 0.98
    grad_clip: float = 1.0  # max global grad norm; <= 0 disables
    # Loss
    k: int = 0  # teacher top-K to use (0 = all stored); the rest joins the tail bucket
    ce_weight: float = 0.0  # mix of cross-entropy on the teacher's tokens, in [0, 1]
    # On-policy targets: the student samples, the teacher scores its samples (needs --teacher)
    onpolicy_ratio: float = 0.0  # share of each batch from the student's own samples, [0, 1]
    onpolicy_every: int = 50  # steps between refreshes of the on-policy samples
    onpolicy_start: int = 0  # offline-only steps first (a student worth sampling from)
    onpolicy_temperature: float = 1.0  # the student's sampling temperature (the validator's)
    onpolicy_max_tokens: int = 0  # answer length limit (0 = the targets' max_tokens)
    # Runtime
    seed: int = 0  # model init (when the student has no weights) and batch order
    device: str = "auto"  # "auto" = cuda if available (bf16 autocast) else cpu (fp32)
    threads: int = 1  # CPU intra-op threads (0 = all); results are bit-exact per thread count
    parallel: str = "ddp"  # with several processes (torchrun): "ddp" or "fsdp" (sharded)
    # Evaluation
    eval_sequences: int = 128  # held out from the end of the targets
    eval_every: int = 200  # -1 = only at the end
    # Output
    save_every: int = 100  # checkpoint every N steps; -1 = only what resume needs at the end
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "onpolicy_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.onpolicy_start < 0:
            raise ConfigError(f"onpolicy_start must be >= 0, got {self.onpolicy_start}")
        for name in ("ce_weight", "onpolicy_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.onpolicy_temperature < 0:
            raise ConfigError(f"onpolicy_temperature must be >= 0, got {self.onpolicy_temperature}")
        if self.parallel not in ("ddp", "fsdp"):
            raise ConfigError(f"parallel must be 'ddp' or 'fsdp', got {self.parallel!r}")

    def onpolicy_per_step(self, step: int) -> int:
        """Sequences of step ``step``'s global batch that come from the student's own samples."""
        return round(self.onpolicy_ratio * self.batch) if step >= self.onpolicy_start else 0


@dataclass(frozen=True)
class TrainResult:
    out: Path
    steps: int
    train_kl: float  # mean of the last 10 % of logged steps' training KL
    eval_kl: float  # held-out validator forward KL, mean over answers
    train_tokens_per_s: float  # input tokens (prompt + completion) per second, this run
    identity: str  # the payload the miner commits (distill.identity)
