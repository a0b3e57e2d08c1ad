"""Built-in scenarios: the incentive questions an owner asks, each as a population.

All share one honest base: validators with Zipf-like stakes (1, 1/2, 1/3, ...), miners with
qualities spread evenly between 0.3 and 0.8 and some round-to-round noise common to every
validator. Each scenario then adds the one thing it is about and names what to watch:

* ``baseline``: honest; at ``event`` the runner-up ships a better model (+0.2 quality).
* ``newcomer``: a better miner (quality 0.95) registers at ``event``.
* ``copier``: one more validator (stake = 10% of the total) copies the others' weights with the
  chain's copier lag; its dividend yield is the number to watch. Miners are equally good and
  noisy, so consensus moves every epoch (what makes stale weights cost something).
* ``cabal``: the three smallest validators move half their weight to a weak miner of theirs.
* ``cheater``: a miner fakes top answers on a ``cheat_fraction`` of its ``answers`` answers a
  step; each validator step catches it with the probability the validator's secret draw gives
  at ``check`` (``verify.spot_check_fraction``): :func:`scoring.economics.round_catch_probability`,
  the function the cheating-economics table is made with. A catch resets that validator's EMA
  of it and suspends it for ``weights.lie_penalty_steps`` rounds, as the validator does.
* ``offline``: the largest validator stops setting weights at ``event``.
"""

from __future__ import annotations

from dataclasses import dataclass

from scoring.economics import round_catch_probability
from scoring.params import ParamError
from scoring.sim_population import MinerSpec, Population, ValidatorSpec

SCENARIOS = ("baseline", "newcomer", "copier", "cabal", "cheater", "offline")


@dataclass(frozen=True)
class Scenario:
    name: str
    population: Population
    event: int  # epoch of the scenario's event (0 if none)
    challenger: str | None = None  # miner expected to overtake ``incumbent`` after ``event``
    incumbent: str | None = None
    focus_validator: str | None = None  # validator whose yield the scenario is about
    focus_miner: str | None = None


def _validators(n: int, noise: float) -> list[ValidatorSpec]:
    return [ValidatorSpec(f"v{i}", stake=100.0 / (i + 1), noise=noise) for i in range(n)]


def _miners(n: int, noise: float) -> list[MinerSpec]:
    if n < 2:
        raise ParamError("miners", "scenarios need at least 2 miners")
    return [
        MinerSpec(f"m{k:03d}", (q, q, q), noise=noise)
        for k, q in ((k, 0.3 + 0.5 * k / (n - 1)) for k in range(n))
    ]


def build(
    name: str,
    *,
    validators: int = 8,
    miners: int = 32,
    epochs: int = 100,
    check: float = 0.5,
    answers: int = 4,
    cheat_fraction: float = 1.0,
) -> Scenario:
    """The named scenario sized to ``validators``/``miners``; events at a quarter of the run."""
    if name not in SCENARIOS:
        raise ParamError("scenario", f"unknown {name!r} (one of {', '.join(SCENARIOS)})")
    if validators < 2:
        raise ParamError("validators", "scenarios need at least 2 validators")
    event = max(1, epochs // 4)
    vals = _validators(validators, noise=0.02)
    mins = _miners(miners, noise=0.03)
    leader, runner = mins[-1].name, mins[-2].name
    if name == "baseline":
        up = mins[-2]
        mins[-2] = MinerSpec(up.name, up.quality, noise=up.noise, upgrade_at=event, upgrade_by=0.2)
        return Scenario(name, Population(tuple(mins), tuple(vals)), event, runner, leader)
    if name == "newcomer":
        mins.append(MinerSpec("newcomer", (0.95, 0.95, 0.95), noise=0.03, arrive=event))
        return Scenario(name, Population(tuple(mins), tuple(vals)), event, "newcomer", leader)
    if name == "copier":
        mins = [MinerSpec(f"m{k:03d}", (0.5, 0.5, 0.5), noise=0.15) for k in range(miners)]
        total = sum(v.stake for v in vals)
        vals.append(ValidatorSpec("copier", stake=total / 9.0, behaviour="copier"))
        pop = Population(tuple(mins), tuple(vals))
        return Scenario(name, pop, 0, focus_validator="copier")
    if name == "cabal":
        mins.append(MinerSpec("cabal_miner", (0.35, 0.35, 0.35), noise=0.03))
        for i in range(len(vals) - min(3, len(vals) - 1), len(vals)):
            vals[i] = ValidatorSpec(
                vals[i].name, vals[i].stake, "cabal", noise=0.02, favourites=("cabal_miner",)
            )
        pop = Population(tuple(mins), tuple(vals))
        return Scenario(name, pop, 0, focus_validator=vals[-1].name, focus_miner="cabal_miner")
    if name == "cheater":
        try:
            catch = round_catch_probability(cheat_fraction, check, answers)
        except ValueError as e:
            raise ParamError("cheater", str(e)) from None
        cheater = MinerSpec(
            "cheater", (0.3, 0.3, 0.3), cheat_caught=catch, cheat_fraction=cheat_fraction
        )
        mins.append(cheater)
        return Scenario(name, Population(tuple(mins), tuple(vals)), 0, focus_miner="cheater")
    vals[0] = ValidatorSpec(vals[0].name, vals[0].stake, "offline", noise=0.02, offline_from=event)
    return Scenario(name, Population(tuple(mins), tuple(vals)), event, focus_validator="v0")
