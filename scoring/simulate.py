"""Incentive simulator: a population of miners and validators, the validators' real scoring code,
and Yuma epochs, over many epochs. Answers "what does this config change do to emissions?"

Each epoch: miners register (pruning the lowest-emission non-immune uid when full), validators
observe noisy answers and run the validator's own score -> EMA -> weights pipeline
(:mod:`scoring.sim_validator` over :mod:`scoring.aggregate`), behaviours decide what reaches the
chain (copiers, late and offline validators, cabals), weights are quantised to u16 as the SDK
does, and the epoch runs in the fast numpy Yuma. On a few sampled epochs the same chain state is
also run through the exact fixed-point engine and the largest difference is reported, so every
sweep carries its own evidence that the fast engine was faithful.

Pure: no I/O; randomness from ``SimConfig.seed``; progress through an optional callback.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from scoring.config import ScoreConfig, WeightsConfig
from scoring.params import ParamError, check_value
from scoring.sim_chain import ChainState, exact_deviation, quantize_rows
from scoring.sim_population import CHAIN_SIM_KEYS, ChainSim, Population, observe, true_quality
from scoring.sim_validator import CAUGHT, answer_scores, counted, ema_step, weight_rows
from scoring.yuma_types import YumaParams

F = npt.NDArray[np.float64]
_C = TypeVar("_C")
OWNER_UID = 0
STAKE_UNIT = 10**9  # rao per unit of ValidatorSpec.stake


@dataclass(frozen=True)
class SimConfig:
    """Everything one run depends on besides the population."""

    score: ScoreConfig = field(default_factory=ScoreConfig)
    weights: WeightsConfig = field(default_factory=WeightsConfig)
    chain: ChainSim = field(default_factory=ChainSim)
    epochs: int = 100
    seed: int = 0
    exact_checks: int = 3

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.exact_checks < 0:
            raise ParamError("epochs", "need epochs >= 1 and exact_checks >= 0")


@dataclass(frozen=True)
class SimResult:
    """Per-epoch outputs. Miner series are per miner *spec* (name), summed over slots it held."""

    miner_names: tuple[str, ...]
    validator_names: tuple[str, ...]
    miner_share: F  # [T, M] share of miner emission (incentive)
    owner_share: F  # [T] incentive burned to the owner uid
    dividend_share: F  # [T, V] share of validator emission
    stake_share: F  # [V] stake / total validator stake
    gini: F  # [T] Gini of miner emissions among registered miners
    consensus_weight: F  # [T, M] mean chain weight per miner (stake-weighted)
    exact_epochs: tuple[int, ...]
    max_deviation: float  # max |fast - exact| over incentive, dividends, bonds on exact_epochs

    @property
    def epochs(self) -> int:
        return int(self.miner_share.shape[0])

    def validator_yield(self) -> F:
        """Dividend share / stake share per epoch and validator (1 = paid exactly its stake)."""
        return self.dividend_share / self.stake_share[None, :]

    def mean_yield(self, name: str, start: int | None = None) -> float:
        """Mean yield of one validator from ``start`` (default: second half, after burn-in)."""
        k = self.validator_names.index(name)
        s = self.epochs // 2 if start is None else start
        return float(self.validator_yield()[s:, k].mean())

    def overtake_epoch(self, challenger: str, incumbent: str, start: int = 0) -> int | None:
        """Epochs after ``start`` until the challenger's share first exceeds the incumbent's."""
        a = self.miner_share[:, self.miner_names.index(challenger)]
        b = self.miner_share[:, self.miner_names.index(incumbent)]
        hits = np.flatnonzero(a[start:] > b[start:])
        return None if hits.size == 0 else int(hits[0])


def gini(x: F) -> float:
    """Gini coefficient of non-negative values (0 = equal, ->1 = one takes all)."""
    v = np.sort(np.asarray(x, dtype=np.float64))
    n, total = v.size, float(v.sum())
    if n == 0 or total <= 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2.0 * (ranks * v).sum()) / (n * total) - (n + 1.0) / n)


def _replace_declared(obj: _C, key: str, name: str, value: object) -> _C:
    fields = {f.name: f for f in dataclasses.fields(obj)}  # type: ignore[arg-type]
    if name not in fields:
        raise ParamError(key, f"unknown key (known: {', '.join(sorted(fields))})")
    return dataclasses.replace(obj, **{name: check_value(key, fields[name], value)})  # type: ignore[type-var]


def with_param(cfg: SimConfig, key: str, value: object) -> SimConfig:
    """``cfg`` with one key replaced: ``scoring.*``/``weights.*`` or a chain hyperparameter
    (a :class:`YumaParams` field or ``commit_reveal_period``/``immunity_period``/``max_uids``).
    Values are checked against the key's declared range; raises :class:`ParamError`."""
    section, _, name = key.rpartition(".")
    if section == "scoring":
        return dataclasses.replace(cfg, score=_replace_declared(cfg.score, key, name, value))
    if section == "weights":
        return dataclasses.replace(cfg, weights=_replace_declared(cfg.weights, key, name, value))
    if section not in ("", "chain"):
        raise ParamError(key, "sweepable: scoring.KEY, weights.KEY, chain hyperparameters")
    chain = cfg.chain
    if name in CHAIN_SIM_KEYS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ParamError(key, f"expected a positive integer, got {value!r}")
        changes: dict[str, int] = {name: value}
        return dataclasses.replace(cfg, chain=dataclasses.replace(chain, **changes))  # type: ignore[arg-type]
    yfields = {f.name for f in dataclasses.fields(YumaParams)}
    if name not in yfields:
        known = sorted([*yfields, *CHAIN_SIM_KEYS])
        raise ParamError(key, f"unknown chain hyperparameter (known: {', '.join(known)})")
    yuma = _replace_declared(chain.yuma, key, name, value)
    return dataclasses.replace(cfg, chain=dataclasses.replace(chain, yuma=yuma))


def _sample_epochs(epochs: int, k: int) -> tuple[int, ...]:
    if k <= 0:
        return ()
    picks = np.unique(np.linspace(1, epochs - 1, num=min(k, epochs)).round().astype(int))
    return tuple(int(e) for e in picks if 0 <= e < epochs)


def simulate(
    pop: Population,
    cfg: SimConfig,
    progress: Callable[[int], None] | None = None,
) -> SimResult:
    """Run ``cfg.epochs`` epochs; ``progress(epoch)`` is called after each one."""
    rng = np.random.default_rng(cfg.seed)
    truth = true_quality(pop, cfg.epochs, rng)
    chain = ChainState.create(pop, cfg.chain, STAKE_UNIT)
    specs_v, n_m = pop.validators, len(pop.miners)
    nv = len(specs_v)
    ema = np.zeros((nv, n_m))
    suspended = np.zeros((nv, n_m), dtype=np.int64)  # rounds left after a caught lie
    winners = np.full(nv, -1, dtype=np.int64)
    history: list[F] = []  # weights each validator's scoring produced, per epoch [V, n]
    stake = np.array([v.stake for v in specs_v], dtype=np.float64)
    fav = np.zeros((nv, n_m), dtype=bool)
    for i, v in enumerate(specs_v):
        for name in v.favourites:
            fav[i, pop.miner_index(name)] = True
    scorer = np.array([v.behaviour != "copier" for v in specs_v])
    cabal = np.array([v.behaviour == "cabal" and bool(v.favourites) for v in specs_v])
    share = np.array([v.cabal_share for v in specs_v])
    lag = np.array([v.lag or cfg.chain.copier_lag() for v in specs_v])
    checks = set(_sample_epochs(cfg.epochs, cfg.exact_checks))
    t_n = cfg.epochs
    out_share, out_owner = np.zeros((t_n, n_m)), np.zeros(t_n)
    out_div, out_gini, out_cw = np.zeros((t_n, nv)), np.zeros(t_n), np.zeros((t_n, n_m))
    max_dev = 0.0

    for t in range(t_n):
        chain.register_arrivals(pop, t)
        registered = chain.registered_specs(n_m)
        for _ in range(pop.steps):
            comp, cause = observe(pop, truth, t, rng)
            scores = answer_scores(comp, cause, cfg.score)
            seen = counted(registered[None, :] & scorer[:, None], cause)
            ema, suspended = ema_step(
                ema, suspended, scores, seen, seen & (cause == CAUGHT), cfg.weights
            )
        eligible = np.zeros(chain.n, dtype=bool)
        eligible[chain.miner_uids_registered()] = True
        ema_uid = chain.spec_to_uid(ema)
        own, winners = weight_rows(ema_uid, eligible, winners, OWNER_UID, cfg.weights)
        if cabal.any():
            fav_uid = chain.spec_to_uid(fav.astype(np.float64))
            fav_uid /= np.maximum(fav_uid.sum(axis=1, keepdims=True), 1.0)
            mixed = (1 - share[:, None]) * own + share[:, None] * fav_uid
            own = np.where(cabal[:, None], mixed, own)
        history.append(own)
        rows = np.full((nv, chain.n), np.nan)  # NaN: this validator sets nothing this epoch
        for i, v in enumerate(specs_v):
            if v.behaviour == "copier":
                rows[i] = chain.copy_others(i, stake, t - int(lag[i]))
            elif v.behaviour == "late":
                if t >= lag[i]:
                    rows[i] = history[t - int(lag[i])][i]
            elif not (v.behaviour == "offline" and t >= (v.offline_from or 0)):
                rows[i] = own[i]
        chain.set_weights(rows, t)
        inputs = chain.epoch_inputs(t)
        fast = inputs.run_fast(cfg.chain.yuma, OWNER_UID)
        if t in checks:
            max_dev = max(max_dev, exact_deviation(inputs, fast, cfg.chain.yuma, OWNER_UID))
        chain.finish_epoch(fast, t)
        out_share[t] = chain.per_spec(fast.incentive, n_m)
        out_owner[t] = float(fast.incentive[OWNER_UID])
        out_div[t] = fast.dividends[chain.validator_uids]
        out_gini[t] = gini(fast.incentive[chain.miner_uids_registered()])
        out_cw[t] = chain.per_spec(chain.chain_weight_mean(fast.active_stake), n_m)
        if progress is not None:
            progress(t)

    return SimResult(
        miner_names=tuple(m.name for m in pop.miners),
        validator_names=tuple(v.name for v in specs_v),
        miner_share=out_share,
        owner_share=out_owner,
        dividend_share=out_div,
        stake_share=stake / stake.sum(),
        gini=out_gini,
        consensus_weight=out_cw,
        exact_epochs=tuple(sorted(checks)),
        max_deviation=max_dev,
    )


__all__ = [
    "ChainSim",
    "Population",
    "SimConfig",
    "SimResult",
    "gini",
    "quantize_rows",
    "simulate",
    "with_param",
]
