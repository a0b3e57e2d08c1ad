"""From sub-scores to an answer score, per-miner EMA, and chain weights over all uids.

Everything works on numpy vectors indexed by uid, so the validator and the owner's simulator run
the very same code on a whole metagraph at once. Pure: the previous EMA, the previous winner and
the hotkeys are passed in, and new values are returned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scoring.causes import Cause, Role, counts_toward_ema, counts_toward_lie_check
from scoring.config import ScoreConfig, WeightsConfig

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


def _unit(name: str, v: float) -> float:
    if not 0.0 <= v <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {v!r}")
    return float(v)


def kl_score(forward_kl: float, reverse_kl: float, topk_overlap: float, cfg: ScoreConfig) -> float:
    """s_kl = exp(-(fkl + rkl_weight * rkl) / tau_kl) * (1 - w + w * overlap), in [0, 1].

    Reverse KL and the overlap term punish a student that covers the teacher's mass while
    putting its own mass elsewhere (forward KL alone gets Goodharted).
    """
    for name, v in (("forward_kl", forward_kl), ("reverse_kl", reverse_kl)):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {v!r}")
    w = cfg.overlap_weight
    base = math.exp(-(forward_kl + cfg.rkl_weight * reverse_kl) / cfg.tau_kl)
    return base * (1.0 - w + w * _unit("topk_overlap", topk_overlap))


@dataclass(frozen=True)
class AnswerScore:
    """One answer: ``score = gate * (w_kl s_kl + w_ref s_ref + w_speed s_speed) / sum(w)``."""

    gate: float  # 1 if every gate passed, else 0
    s_kl: float
    s_ref: float
    s_speed: float
    score: float
    cause: Cause

    @property
    def use_in_ema(self) -> bool:
        """Whether a miner's answer with this score counts (:func:`counts_toward_ema`)."""
        return counts_toward_ema(Role.MINER, self.cause)


def answer_score(
    cause: Cause, s_kl: float, s_ref: float, s_speed: float, cfg: ScoreConfig
) -> AnswerScore:
    """Combine sub-scores (each in [0, 1]); any failed gate zeroes the answer.

    Weights are normalised by their sum, so ``score`` is in [0, 1] whatever the owner sets.
    """
    s_kl, s_ref, s_speed = _unit("s_kl", s_kl), _unit("s_ref", s_ref), _unit("s_speed", s_speed)
    gate = 1.0 if cause is Cause.OK else 0.0
    total_w = cfg.w_kl + cfg.w_ref + cfg.w_speed
    mix = (cfg.w_kl * s_kl + cfg.w_ref * s_ref + cfg.w_speed * s_speed) / total_w
    return AnswerScore(gate, s_kl, s_ref, s_speed, gate * mix, cause)


def _answer_uids(uids: npt.ArrayLike, n_answers: int, what: str, n_uids: int) -> IntArray:
    """The uid of each of a round's answers, checked against its per-answer ``what``."""
    u = np.asarray(uids, dtype=np.int64)
    if u.ndim != 1 or u.size != n_answers:
        raise ValueError(f"uids {u.shape} and {n_answers} {what} must be equal-length [M]")
    if u.size and (u.min() < 0 or u.max() >= n_uids):
        raise ValueError(f"uids must be in [0, {n_uids})")
    return u


def round_means(
    uids: npt.ArrayLike, scores: npt.ArrayLike, n_uids: int
) -> tuple[FloatArray, BoolArray]:
    """Mean answer score per uid over one round, and which uids were observed at all."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores {s.shape} must be [M]")
    u = _answer_uids(uids, s.size, "scores", n_uids)
    if not (np.isfinite(s) & (s >= 0) & (s <= 1)).all():
        raise ValueError("scores must be in [0, 1]")
    counts = np.bincount(u, minlength=n_uids)
    sums = np.bincount(u, weights=s, minlength=n_uids)
    observed = counts > 0
    return np.where(observed, sums / np.maximum(counts, 1), 0.0), observed


def update_ema(
    ema: npt.ArrayLike, scores: npt.ArrayLike, observed: npt.ArrayLike, alpha: float
) -> FloatArray:
    """``ema_new = alpha * score + (1 - alpha) * ema_old`` for observed uids; others unchanged.

    A new (or reset) uid starts from 0, so it climbs to its level over ~1/alpha rounds: one
    lucky answer cannot buy a fresh hotkey full weight. Unobserved uids keep their EMA (not
    being queried this round is not the miner's fault).
    """
    old = np.asarray(ema, dtype=np.float64)
    new = np.asarray(scores, dtype=np.float64)
    seen = np.asarray(observed, dtype=bool)
    if old.ndim != 1 or new.shape != old.shape or seen.shape != old.shape:
        raise ValueError(f"ema {old.shape}, scores {new.shape}, observed {seen.shape} differ")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    if not (np.isfinite(old).all() and np.isfinite(new[seen]).all()):
        raise ValueError("ema and observed scores must be finite")
    return np.where(seen, alpha * new + (1.0 - alpha) * old, old)


def proven_liars(uids: npt.ArrayLike, causes: Sequence[str], n_uids: int) -> BoolArray:
    """Uids with at least one answer this round whose cause proves a lie (``Cause.proves_lie``).

    ``causes`` are cause codes as stored (``Cause`` members or their strings).
    """
    u = _answer_uids(uids, len(causes), "causes", n_uids)
    lies = np.zeros(u.size, dtype=bool)
    for i, c in enumerate(causes):
        try:
            lies[i] = Cause(c).proves_lie
        except ValueError:
            raise ValueError(f"unknown cause code {c!r}") from None
    out = np.zeros(n_uids, dtype=bool)
    out[u[lies]] = True
    return out


@dataclass(frozen=True)
class RoundAnswer:
    """One answer of a round as the EMA sees it: who gave it, what it scored and why."""

    role: Role
    uid: int | None  # the miner's uid; None for the validator's baseline (it has none)
    score: float
    cause: Cause

    def __post_init__(self) -> None:
        if (self.role is Role.BASELINE) == (self.uid is not None):
            raise ValueError(f"a {self.role.value} answer with uid {self.uid!r}")


@dataclass(frozen=True)
class RoundScores:
    """What one round contributes to the EMA, per uid."""

    means: FloatArray  # [N] mean score of the uid's counted answers, 0 where none
    observed: BoolArray  # [N] the uid had at least one counted answer
    caught: BoolArray  # [N] one of its counted answers proves a lie (``Cause.proves_lie``)


def score_round(answers: Sequence[RoundAnswer], n_uids: int) -> RoundScores:
    """Per-uid means, observations and proven lies of a round, from the answers that count.

    The validator's step and the replay of its database both reduce a round through here, so
    the answers left out (the baseline's, those the validator failed to score: see
    :func:`scoring.causes.counts_toward_ema`) are the same in both. Organic answers only take
    part in the lie check (:func:`scoring.causes.counts_toward_lie_check`).
    """
    uids, scores = [], []
    lie_uids, lie_causes = [], []
    for a in answers:
        if a.uid is None:
            continue
        if counts_toward_ema(a.role, a.cause):
            uids.append(a.uid)
            scores.append(a.score)
        if counts_toward_lie_check(a.role, a.cause):
            lie_uids.append(a.uid)
            lie_causes.append(a.cause)
    means, observed = round_means(uids, scores, n_uids)
    return RoundScores(means, observed, proven_liars(lie_uids, lie_causes, n_uids))


@dataclass(frozen=True)
class EmaUpdate:
    ema: FloatArray  # [N] the new EMA
    suspended: IntArray  # [N] rounds each uid still earns nothing for, after this one
    punished: BoolArray  # [N] uids held at 0 this round (caught now, or still suspended)


def advance_ema(
    ema: npt.ArrayLike,
    suspended: npt.ArrayLike,
    scores: npt.ArrayLike,
    observed: npt.ArrayLike,
    caught: npt.ArrayLike,
    alpha: float,
    penalty_steps: int,
) -> EmaUpdate:
    """One round of EMA with the lie penalty: the rule every consumer of scores shares.

    A uid ``caught`` in a proven lie this round loses the round and its EMA (reset to 0, as a
    new hotkey) and then earns nothing for ``penalty_steps`` more rounds, whatever it answers.
    Without it, a miner serving another model than it committed is only caught on the answers
    where the two models disagree and is paid for the rest; with it, one caught lie in a
    spot-checked round costs more than the lying can earn. Otherwise as :func:`update_ema`.
    """
    new = update_ema(ema, scores, observed, alpha)
    left = np.asarray(suspended, dtype=np.int64)
    hit = np.asarray(caught, dtype=bool)
    if left.shape != new.shape or hit.shape != new.shape:
        raise ValueError(f"suspended {left.shape} and caught {hit.shape} must be {new.shape}")
    if (left < 0).any() or penalty_steps < 0:
        raise ValueError("suspension counts and penalty_steps must be >= 0")
    punished = hit | (left > 0)
    return EmaUpdate(
        np.where(punished, 0.0, new),
        np.where(hit, penalty_steps, np.maximum(left - 1, 0)).astype(np.int64),
        punished,
    )


def reset_changed(
    ema: npt.ArrayLike, old_hotkeys: Sequence[str], new_hotkeys: Sequence[str]
) -> FloatArray:
    """EMA (or any per-uid state) for the new metagraph: kept where the uid's hotkey is
    unchanged, 0 where it changed.

    A deregistered uid re-registered by a new hotkey is a new miner; it inherits nothing, its
    predecessor's suspension included. The result has ``len(new_hotkeys)`` entries (the subnet
    may have grown).
    """
    old = np.asarray(ema, dtype=np.float64)
    if old.shape != (len(old_hotkeys),):
        raise ValueError(f"ema {old.shape} does not match {len(old_hotkeys)} old hotkeys")
    out = np.zeros(len(new_hotkeys), dtype=np.float64)
    for uid, hk in enumerate(new_hotkeys):
        if uid < len(old_hotkeys) and old_hotkeys[uid] == hk:
            out[uid] = old[uid]
    return out


@dataclass(frozen=True)
class WeightResult:
    weights: FloatArray  # [N], sums to 1, or all 0 when no miner is valid
    winner: int | None  # the uid with the largest weight (wta: the incumbent rule applied)


def _ranked(ema: FloatArray, valid: BoolArray) -> list[int]:
    """Valid uids, best EMA first, ties to the lower uid (deterministic across validators)."""
    order = np.lexsort((np.arange(ema.size), -ema))
    return [int(u) for u in order if valid[u]]


def _power(ema: FloatArray, mask: BoolArray, p: float) -> FloatArray:
    """Normalised ema^p over ``mask``; scaled by the max first so tiny EMAs cannot underflow."""
    top = ema[mask].max() if mask.any() else 1.0
    raw = np.where(mask, np.power(np.where(mask, ema / top, 1.0), p), 0.0)
    total = raw.sum()
    return np.asarray(raw / total if total > 0 else raw, dtype=np.float64)


def transform_weights(
    ema: npt.ArrayLike,
    cfg: WeightsConfig,
    eligible: npt.ArrayLike | None = None,
    prev_winner: int | None = None,
) -> WeightResult:
    """EMA over all uids -> normalised weights, by ``cfg.transform``.

    Only uids that are ``eligible`` (default: all; the validator excludes validators and the
    owner uid) with EMA above ``cfg.min_score`` get weight.

    * ``power``: w ∝ ema^power (power 0: equal split).
    * ``top_n``: the ``top_n`` best, then w ∝ ema^power among them.
    * ``wta`` (winner-take-most): the best uid takes ``wta_share`` and the rest share the
      remainder ∝ ema^power; the previous winner keeps the crown unless a challenger's EMA
      exceeds its EMA by the factor ``1 + dethrone_margin`` (noise must not flip the winner).

    All zeros when nothing is valid: the validator should then send all weight to the owner
    uid (:func:`apply_burn` does so) rather than set no weights.
    """
    e = np.asarray(ema, dtype=np.float64)
    if e.ndim != 1:
        raise ValueError(f"ema must be [N], got shape {e.shape}")
    if not (np.isfinite(e).all() and (e >= 0).all()):
        raise ValueError("ema must be finite and >= 0")
    elig = np.ones(e.shape, bool) if eligible is None else np.asarray(eligible, dtype=bool)
    if elig.shape != e.shape:
        raise ValueError(f"eligible {elig.shape} does not match ema {e.shape}")
    valid = elig & (e > cfg.min_score)
    ranked = _ranked(e, valid)
    if not ranked:
        return WeightResult(np.zeros(e.shape, dtype=np.float64), None)
    if cfg.transform == "power":
        return WeightResult(_power(e, valid, cfg.power), ranked[0])
    if cfg.transform == "top_n":
        keep = np.zeros(e.shape, bool)
        keep[ranked[: cfg.top_n]] = True
        return WeightResult(_power(e, keep, cfg.power), ranked[0])
    if cfg.transform != "wta":
        raise ValueError(f"unknown transform {cfg.transform!r}")
    winner = ranked[0]
    if (
        prev_winner is not None
        and 0 <= prev_winner < e.size
        and valid[prev_winner]
        and e[winner] <= e[prev_winner] * (1.0 + cfg.dethrone_margin)
    ):
        winner = prev_winner
    others = valid.copy()
    others[winner] = False
    weights = _power(e, others, cfg.power)
    if weights.sum() > 0:
        weights *= 1.0 - cfg.wta_share
        weights[winner] = cfg.wta_share
    else:
        weights[winner] = 1.0
    return WeightResult(weights, winner)


def apply_burn(weights: npt.ArrayLike, owner_uid: int, share: float) -> FloatArray:
    """Send ``share`` of the weight to ``owner_uid`` (burned emission), scaling the rest.

    All-zero weights (no valid miner) become all weight on the owner uid, so the validator
    still sets weights and the round's miner emission is burned instead of lost to stale ones.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or not 0 <= owner_uid < w.size:
        raise ValueError(f"owner_uid {owner_uid} outside weights of shape {w.shape}")
    share = _unit("share", share)
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise ValueError("weights must be finite and >= 0")
    total = w.sum()
    out = np.zeros_like(w)
    if total <= 0:
        out[owner_uid] = 1.0
        return out
    out = np.asarray((1.0 - share) * w / total, dtype=np.float64)
    out[owner_uid] += share
    return out
