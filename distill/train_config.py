"""The trainer's settings and result (no torch here, so the CLI can list flags cheaply)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TrainConfig:
    # Optimisation
    steps: int = 800
    batch: int = 32  # sequences per step
    lr: float = 3e-3  # peak; linear warmup, cosine decay to lr * min_lr_frac
    warmup: int = 50
    min_lr_frac: float = 0.1
    weight_decay: float = 0.01
    beta2: float = 0.98
    grad_clip: float = 1.0  # max global grad norm; <= 0 disables
    # Loss
    k: int = 0  # teacher top-K to use (0 = all stored); the rest joins the tail bucket
    ce_weight: float = 0.0  # mix of cross-entropy on the teacher's tokens, in [0, 1]
    # Runtime
    seed: int = 0  # model init (when the student has no weights) and batch order
    device: str = "auto"  # "auto" = cuda if available (bf16 autocast) else cpu (fp32)
    threads: int = 1  # CPU intra-op threads (0 = all); results are bit-exact per thread count
    # Evaluation
    eval_sequences: int = 128  # held out from the end of the targets
    eval_every: int = 200  # -1 = only at the end
    # Output
    save_every: int = 100  # checkpoint every N steps; -1 = only what resume needs at the end
    keep_checkpoints: int = 2


@dataclass(frozen=True)
class TrainResult:
    out: Path
    steps: int
    train_kl: float  # mean of the last 10 % of logged steps' training KL
    eval_kl: float  # held-out validator forward KL, mean over answers
    train_tokens_per_s: float  # input tokens (prompt + completion) per second, this run
    identity: str  # the payload the miner commits (distill.identity)
