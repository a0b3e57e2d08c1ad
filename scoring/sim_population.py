"""Who is on the simulated subnet: miners, validators, the chain's knobs, and what validators see.

A population is data (frozen dataclasses), so a scenario is a value an owner can print, diff and
sweep. Uid layout is fixed and documented because charts and tests name uids: uid 0 is the
subnet owner (takes burned weight, holds no stake), uids ``1..V`` are the validators in the order
given, and the miner slots follow. Each miner spec owns a slot unless ``max_uids`` is smaller, in
which case late arrivals take the slot of the lowest-emission non-immune miner (chain pruning).

Pure: randomness comes from a ``numpy.random.Generator`` the caller seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from scoring.params import ParamError
from scoring.yuma_types import YumaParams

F = npt.NDArray[np.float64]
BEHAVIOURS = ("honest", "copier", "late", "cabal", "offline")
COMPONENTS = ("kl", "ref", "speed")


@dataclass(frozen=True)
class MinerSpec:
    """One miner: mean quality of each score component in [0, 1] and how it moves over time.

    ``drift``: standard deviation per epoch of a random walk added to every component (models
    miners retraining, hardware changes). ``upgrade_at``/``upgrade_by``: a step change in quality
    (a better model) at that epoch. ``cheat_caught``: if set, the miner fakes top answers on a
    ``cheat_fraction`` of its answers and each validator step catches it with this probability
    (its round then scores 0, as a failed verification does; scenarios compute it with
    :func:`scoring.economics.round_catch_probability`, the validator's own selection rate).
    ``arrive``/``depart``: epochs it starts and stops answering.
    """

    name: str
    quality: tuple[float, float, float]
    noise: float = 0.02
    drift: float = 0.0
    arrive: int = 0
    depart: int | None = None
    upgrade_at: int | None = None
    upgrade_by: float = 0.0
    cheat_caught: float | None = None
    cheat_fraction: float = 1.0

    def __post_init__(self) -> None:
        if len(self.quality) != len(COMPONENTS):
            raise ParamError(f"miner {self.name}.quality", "expected (kl, ref, speed)")
        if any(not 0.0 <= q <= 1.0 for q in self.quality):
            raise ParamError(f"miner {self.name}.quality", f"must be in [0, 1]: {self.quality}")
        if self.noise < 0 or self.drift < 0:
            raise ParamError(f"miner {self.name}", "noise and drift must be >= 0")
        if self.arrive < 0 or (self.depart is not None and self.depart <= self.arrive):
            raise ParamError(f"miner {self.name}", "need 0 <= arrive < depart")
        if self.cheat_caught is not None and not 0.0 <= self.cheat_caught <= 1.0:
            raise ParamError(f"miner {self.name}.cheat_caught", "a probability in [0, 1]")
        if not 0.0 <= self.cheat_fraction <= 1.0:
            raise ParamError(f"miner {self.name}.cheat_fraction", "a fraction in [0, 1]")


@dataclass(frozen=True)
class ValidatorSpec:
    """One validator: stake (any unit), observation noise, behaviour.

    * ``honest``: scores every miner itself, sets weights each epoch.
    * ``copier``: scores nothing; sets the stake-weighted mean of the others' on-chain weights
      from ``lag`` epochs earlier (``lag`` 0 means "the chain's copier lag": the commit-reveal
      period when commit-reveal is on, else 1).
    * ``late``: scores honestly but its weights reach the chain ``lag`` epochs late.
    * ``cabal``: scores honestly, then moves ``cabal_share`` of its weight to ``favourites``.
    * ``offline``: honest until ``offline_from``, then never sets weights again.
    """

    name: str
    stake: float
    behaviour: str = "honest"
    noise: float = 0.05
    lag: int = 0
    favourites: tuple[str, ...] = ()
    cabal_share: float = 0.5
    offline_from: int | None = None

    def __post_init__(self) -> None:
        if self.behaviour not in BEHAVIOURS:
            raise ParamError(f"validator {self.name}.behaviour", f"one of {', '.join(BEHAVIOURS)}")
        if self.stake <= 0 or self.noise < 0 or self.lag < 0:
            raise ParamError(f"validator {self.name}", "need stake > 0, noise >= 0, lag >= 0")
        if not 0.0 <= self.cabal_share <= 1.0:
            raise ParamError(f"validator {self.name}.cabal_share", "a fraction in [0, 1]")


@dataclass(frozen=True)
class ChainSim:
    """Chain hyperparameters the simulation uses beyond one epoch's :class:`YumaParams`.

    ``commit_reveal_period`` (epochs) is the copier's lag when ``yuma.commit_reveal_enabled``;
    ``immunity_period`` (blocks) protects new registrations from pruning.
    """

    yuma: YumaParams = field(default_factory=lambda: YumaParams(tempo=360))
    commit_reveal_period: int = 1
    immunity_period: int = 5000
    max_uids: int = 256

    def copier_lag(self) -> int:
        return self.commit_reveal_period if self.yuma.commit_reveal_enabled else 1


CHAIN_SIM_KEYS = ("commit_reveal_period", "immunity_period", "max_uids")


@dataclass(frozen=True)
class Population:
    """Miners and validators of one scenario; ``steps`` validator steps per epoch."""

    miners: tuple[MinerSpec, ...]
    validators: tuple[ValidatorSpec, ...]
    steps: int = 1

    def __post_init__(self) -> None:
        if not self.miners or not self.validators:
            raise ParamError("population", "needs at least one miner and one validator")
        names = [m.name for m in self.miners]
        if len(set(names)) != len(names):
            raise ParamError("population", "miner names must be unique")
        for v in self.validators:
            unknown = set(v.favourites) - set(names)
            if unknown:
                raise ParamError(f"validator {v.name}.favourites", f"unknown miners {unknown}")
        if self.steps < 1:
            raise ParamError("population.steps", "at least 1 step per epoch")

    @property
    def n_validators(self) -> int:
        return len(self.validators)

    def miner_index(self, name: str) -> int:
        for k, m in enumerate(self.miners):
            if m.name == name:
                return k
        raise KeyError(name)


@dataclass(frozen=True)
class Truth:
    """Per miner spec and epoch: true component quality ``[T, M, 3]``, online flag ``[T, M]``."""

    quality: F
    online: npt.NDArray[np.bool_]


def true_quality(pop: Population, epochs: int, rng: np.random.Generator) -> Truth:
    """Draw every miner's quality path (drift walk + upgrades), clipped to [0, 1]."""
    m = len(pop.miners)
    base = np.array([s.quality for s in pop.miners], dtype=np.float64)  # [M, 3]
    drift = np.array([s.drift for s in pop.miners], dtype=np.float64)
    steps = rng.normal(0.0, 1.0, size=(epochs, m, 1)) * drift[None, :, None]
    walk = np.cumsum(steps, axis=0)
    t = np.arange(epochs)[:, None]
    up = np.zeros((epochs, m))
    online = np.zeros((epochs, m), dtype=bool)
    for k, s in enumerate(pop.miners):
        if s.upgrade_at is not None:
            up[t[:, 0] >= s.upgrade_at, k] = s.upgrade_by
        end = epochs if s.depart is None else s.depart
        online[s.arrive : end, k] = True
    q = np.clip(base[None] + walk + up[:, :, None], 0.0, 1.0)
    return Truth(quality=q, online=online)


def observe(
    pop: Population, truth: Truth, epoch: int, rng: np.random.Generator
) -> tuple[F, npt.NDArray[np.int8]]:
    """What every validator measures this step: components ``[V, M, 3]`` and cause codes.

    A miner's own noise is common to all validators (its answers this round are good or bad for
    everyone: that is what moves consensus); each validator adds its own measurement noise.
    Codes: 0 scored normally, 1 no answer (miner offline), 2 caught by a spot check (cheaters
    report top components and are caught with their per-step probability).
    """
    v, m = pop.n_validators, len(pop.miners)
    own = np.array([x.noise for x in pop.validators])
    common = rng.normal(size=(m, 3)) * np.array([s.noise for s in pop.miners])[:, None]
    comp = (truth.quality[epoch] + common)[None] + rng.normal(size=(v, m, 3)) * own[:, None, None]
    cause = np.zeros((v, m), dtype=np.int8)
    for k, s in enumerate(pop.miners):
        if s.cheat_caught is not None:  # fabricated answers score as the best (0.98)
            comp[:, k, :] = (1.0 - s.cheat_fraction) * comp[:, k, :] + s.cheat_fraction * 0.98
            cause[rng.random(v) < s.cheat_caught, k] = 2
    cause[:, ~truth.online[epoch]] = 1
    return np.clip(comp, 0.0, 1.0), cause
