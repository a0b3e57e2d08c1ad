"""The validator's score -> EMA -> weights pipeline, batched over simulated validators.

Every number goes through :mod:`scoring.aggregate`, the code a real validator runs (answer
score, EMA update, weight transform, burn), so a config change an owner simulates is the change
validators will ship. This module only batches: rows are validators, columns are miner specs or
uids.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from scoring.aggregate import (
    advance_ema,
    answer_score,
    apply_burn,
    reset_changed,
    transform_weights,
)
from scoring.causes import Cause, Role, counts_toward_ema
from scoring.config import ScoreConfig, WeightsConfig

F = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]
Int = npt.NDArray[np.int64]


def answer_scores(comp: F, cause: npt.NDArray[np.int8], cfg: ScoreConfig) -> F:
    """Per-answer score ``[V, M]`` from components ``[V, M, 3]`` and cause codes (see CAUSES)."""
    out = np.empty(comp.shape[:2])
    flat = comp.reshape(-1, 3).tolist()
    codes = cause.ravel().tolist()
    res = out.reshape(-1)
    for k, ((kl, ref, speed), c) in enumerate(zip(flat, codes, strict=True)):
        res[k] = answer_score(CAUSES[c], kl, ref, speed, cfg).score
    return out


CAUSES = (Cause.OK, Cause.TIMEOUT, Cause.DIST_MISMATCH)  # indexed by the simulator's codes


CAUGHT = CAUSES.index(Cause.DIST_MISMATCH)

# Per simulator code: whether a miner's answer with that cause enters its EMA (the validator's
# rule, :func:`scoring.causes.counts_toward_ema`; every simulated answer is a miner's).
COUNTED = np.array([counts_toward_ema(Role.MINER, c) for c in CAUSES], dtype=bool)


def counted(seen: Bool, cause: npt.NDArray[np.int8]) -> Bool:
    """``[V, M]`` answers that enter the EMA: observed, and of a cause the validator counts."""
    return np.asarray(seen & COUNTED[cause], dtype=bool)


def ema_step(
    ema: F, suspended: Int, scores: F, seen: Bool, caught: Bool, cfg: WeightsConfig
) -> tuple[F, Int]:
    """One EMA round for every validator row at once, lie penalty included (elementwise)."""
    upd = advance_ema(
        ema.ravel(),
        suspended.ravel(),
        scores.ravel(),
        seen.ravel(),
        caught.ravel(),
        cfg.ema_alpha,
        cfg.lie_penalty_steps,
    )
    return upd.ema.reshape(ema.shape), upd.suspended.reshape(ema.shape)


def weight_rows(
    ema_uid: F, eligible: Bool, winners: Int, owner_uid: int, cfg: WeightsConfig
) -> tuple[F, Int]:
    """Chain weights per validator row over uids (burn included) and each row's new winner.

    ``ema_uid``: ``[V, N]`` EMA per uid; ``winners``: each row's previous winner uid (-1 none),
    kept for winner-take-most's dethrone margin.
    """
    rows = np.zeros_like(ema_uid)
    new_winners = winners.copy()
    for i in range(ema_uid.shape[0]):
        prev = int(winners[i])
        res = transform_weights(ema_uid[i], cfg, eligible, None if prev < 0 else prev)
        rows[i] = apply_burn(res.weights, owner_uid, cfg.burn_share)
        new_winners[i] = -1 if res.winner is None else res.winner
    return rows, new_winners


def replay_weights(
    step_scores: F,
    observed: Bool,
    caught: Bool,
    hotkeys: list[list[str]],
    weight_steps: list[int],
    owner_uid: int,
    cfg: WeightsConfig,
) -> F:
    """Re-run a validator's EMA and weights over its recorded per-step scores.

    ``step_scores``/``observed``: ``[S, N]`` mean answer score per uid per step (as
    :func:`scoring.aggregate.round_means` gives) and whether the uid was queried; ``caught``:
    ``[S, N]`` whether the uid was caught in a proven lie that step; ``hotkeys``:
    per step, the hotkey of every uid ("" unknown), so a re-registered uid starts over as the
    validator does. Returns the weights ``[len(weight_steps), N]`` the validator would set
    after each listed step index (0-based into the step axis).
    """
    s, n = step_scores.shape
    if observed.shape != (s, n) or caught.shape != (s, n) or len(hotkeys) != s:
        raise ValueError(
            "step_scores, observed, caught and hotkeys must cover the same steps and uids"
        )
    ema, held = np.zeros(n), np.zeros(n, dtype=np.int64)
    prev_hk = hotkeys[0] if s else []
    winner: int | None = None
    eligible = np.zeros(n, dtype=bool)
    out = np.zeros((len(weight_steps), n))
    wanted = {k: i for i, k in enumerate(weight_steps)}
    for k in range(s):
        ema = reset_changed(ema, prev_hk, hotkeys[k])
        kept = reset_changed(held, prev_hk, hotkeys[k])
        prev_hk = hotkeys[k]
        upd = advance_ema(
            ema, kept, step_scores[k], observed[k], caught[k], cfg.ema_alpha, cfg.lie_penalty_steps
        )
        ema, held = upd.ema, upd.suspended
        eligible |= observed[k]
        eligible[owner_uid] = False
        if k in wanted:
            res = transform_weights(ema, cfg, eligible, winner)
            winner = res.winner
            out[wanted[k]] = apply_burn(res.weights, owner_uid, cfg.burn_share)
    return out
