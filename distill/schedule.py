"""Pure functions of the step: the learning rate and which sequences a step trains on.

Nothing the trainer draws depends on how far a previous run got or on how many processes
share the work, which is what makes resume exact and N ranks equal one process.
"""

from __future__ import annotations

import math

import numpy as np

from distill.train_config import TrainConfig


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to ``cfg.min_lr_frac`` of the peak."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress))


def batch_indices(step: int, n: int, batch: int, seed: int, stream: int | None = None) -> list[int]:
    """Sequences of step ``step``: a seeded permutation of ``range(n)`` per epoch.

    ``stream`` separates independent draws from one seed (the on-policy prompts); None is the
    offline batch order.
    """
    lo, hi = step * batch, (step + 1) * batch
    out: list[int] = []
    for epoch in range(lo // n, (hi - 1) // n + 1):
        key = [seed, epoch] if stream is None else [seed, stream, epoch]
        perm = np.random.default_rng(key).permutation(n)
        out += perm[max(lo - epoch * n, 0) : min(hi - epoch * n, n)].tolist()
    return out
