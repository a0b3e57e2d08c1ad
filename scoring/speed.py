"""Speed of answers relative to the best valid answer of the same round.

Timings are the validator's own clock on the streamed answer, so they are trusted numbers; only
answers that passed every gate set the bar, so a fast garbage answer cannot depress the others.
Relative scores make the bar move with the hardware of the field instead of a fixed constant.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from scoring.config import SpeedConfig

FloatArray = npt.NDArray[np.float64]


def speed_scores(
    n_tokens: npt.ArrayLike,
    ttft_s: npt.ArrayLike,
    total_s: npt.ArrayLike,
    valid: npt.ArrayLike,
    cfg: SpeedConfig,
) -> FloatArray:
    """s_speed per answer in [0, 1]; 0 for invalid answers.

    ``tps = n_tokens / total_s`` and ``ttft`` (both floored at ``cfg.min_seconds``);
    ``s = (1 - w) * tps / max_valid(tps) + w * min_valid(ttft) / ttft`` with
    ``w = cfg.ttft_weight``. All zeros when no answer is valid. Raises ``ValueError`` on
    mismatched shapes, negative or non-finite timings, or ttft > total.
    """
    n = np.asarray(n_tokens, dtype=np.float64)
    ttft = np.asarray(ttft_s, dtype=np.float64)
    total = np.asarray(total_s, dtype=np.float64)
    ok = np.asarray(valid, dtype=bool)
    if not n.ndim == 1 or not n.shape == ttft.shape == total.shape == ok.shape:
        raise ValueError(f"shapes differ: {n.shape}, {ttft.shape}, {total.shape}, {ok.shape}")
    for name, arr in (("n_tokens", n), ("ttft_s", ttft), ("total_s", total)):
        if not (np.isfinite(arr) & (arr >= 0)).all():
            raise ValueError(f"{name} must be finite and >= 0")
    if (ttft > total).any():
        raise ValueError("ttft_s must not exceed total_s")
    out = np.zeros(n.shape, dtype=np.float64)
    if not ok.any():
        return out
    tps = n / np.maximum(total, cfg.min_seconds)
    ttft = np.maximum(ttft, cfg.min_seconds)
    best_tps = tps[ok].max()
    rel_tps = tps / best_tps if best_tps > 0 else np.zeros_like(tps)
    rel_ttft = ttft[ok].min() / ttft
    w = cfg.ttft_weight
    out[ok] = np.clip((1 - w) * rel_tps[ok] + w * rel_ttft[ok], 0.0, 1.0)
    return out
