"""What cheating pays: the long-run reward of a miner that fabricates on a fraction of its answers.

The model (every assumption favours the cheater, so a table that says "cheating loses" is safe):

* Each validator step (a *round*) the miner gives ``answers`` answers. It fabricates each with
  probability ``fabricate`` (``f``), independently: it cannot tell which answers will be checked,
  because the validator draws them from a secret (``neurons/validator/draw.py``).
* Each answer is spot-checked with probability ``check`` (``p``, ``verify.spot_check_fraction``);
  a checked fabricated answer is caught with probability ``detect`` (1 for fabricated
  distributions; lower for a swapped model that agrees with the committed one on easy prompts).
  A round is caught with probability ``q = 1 - (1 - f p detect) ** answers``
  (:func:`round_catch_probability`, which the simulator's ``cheater`` scenario uses too).
* An honest answer scores ``honest``; a fabricated one ``fabricated`` (default 1.0, the best
  any answer can score). A round that is not caught scores the expected mean of its answers.
* A catch voids the round, resets the EMA to 0 and holds it there ``penalty_steps`` more rounds
  (``weights.lie_penalty_steps``, :func:`scoring.aggregate.advance_ema`); the cheater is honest
  while suspended (so it is never caught again then: its best play). Afterwards the EMA climbs
  back from 0 with ``alpha`` (``weights.ema_alpha``).
* Its emission in a round is proportional to ``EMA ** power`` (``weights.power``: its share of
  the weights when it is one of many miners). Score noise is ignored: it moves honest and
  cheating miners alike.

The long-run reward is the average of ``EMA ** power`` over renewal cycles (a catch round, the
suspension, then rounds until the next catch), computed exactly: a finite head of the climb plus
a closed-form tail. :func:`cheat_ratio` divides it by the same miner's honest reward; below 1,
cheating loses. Pure: numbers in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# The climb back is summed term by term until (1 - alpha) ** j < _TAIL_EPS; past that the EMA
# equals its level to double precision and the remaining rounds form a geometric tail.
_TAIL_EPS = 1e-13


def _prob(name: str, v: float) -> float:
    if not (isinstance(v, int | float) and 0.0 <= v <= 1.0):  # also rejects NaN
        raise ValueError(f"{name} must be a probability in [0, 1], got {v!r}")
    return float(v)


def round_catch_probability(
    fabricate: float, check: float, answers: int, detect: float = 1.0
) -> float:
    """Probability that a round with ``answers`` answers, each fabricated with probability
    ``fabricate`` and checked with probability ``check``, has at least one caught answer."""
    f, p, c = _prob("fabricate", fabricate), _prob("check", check), _prob("detect", detect)
    if isinstance(answers, bool) or not isinstance(answers, int) or answers < 0:
        raise ValueError(f"answers must be a non-negative integer, got {answers!r}")
    return 1.0 - (1.0 - f * p * c) ** answers


def escape_probability(per_answer_catch: float, answers: int) -> float:
    """Probability that ``answers`` answers in a row, each caught with ``per_answer_catch``,
    are all missed (how likely a cheater is to pass a run's warm-up unseen)."""
    c = _prob("per_answer_catch", per_answer_catch)
    if isinstance(answers, bool) or not isinstance(answers, int) or answers < 0:
        raise ValueError(f"answers must be a non-negative integer, got {answers!r}")
    return (1.0 - c) ** answers


@dataclass(frozen=True)
class CheatTerms:
    """The incentive parameters the reward depends on (defaults: the subnet's defaults)."""

    check: float  # spot_check_fraction
    answers: int  # answers per miner per round (validator.tasks_per_step)
    penalty_steps: int  # weights.lie_penalty_steps
    alpha: float = 0.2  # weights.ema_alpha
    power: float = 2.0  # weights.power
    detect: float = 1.0  # chance a checked fabrication is seen
    fabricated: float = 1.0  # score of a fabricated answer (1: the best case for the cheater)

    def __post_init__(self) -> None:
        _prob("check", self.check)
        _prob("detect", self.detect)
        _prob("fabricated", self.fabricated)
        if isinstance(self.answers, bool) or not isinstance(self.answers, int) or self.answers < 1:
            raise ValueError(f"answers must be an integer >= 1, got {self.answers!r}")
        if isinstance(self.penalty_steps, bool) or not isinstance(self.penalty_steps, int):
            raise ValueError(f"penalty_steps must be an integer, got {self.penalty_steps!r}")
        if self.penalty_steps < 0:
            raise ValueError(f"penalty_steps must be >= 0, got {self.penalty_steps}")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha!r}")
        if not (math.isfinite(self.power) and self.power >= 0.0):
            raise ValueError(f"power must be finite and >= 0, got {self.power!r}")


def expected_reward(fabricate: float, honest: float, terms: CheatTerms) -> float:
    """Long-run mean of ``EMA ** power`` per round for a miner that fabricates a fraction
    ``fabricate`` of its answers and scores ``honest`` on the others (see the module docs)."""
    f, s = _prob("fabricate", fabricate), _prob("honest", honest)
    pc = terms.check * terms.detect
    q = round_catch_probability(f, terms.check, terms.answers, terms.detect)
    # The mean score of a round that was not caught: its answers are fabricated with the
    # probability f(1 - pc) / (1 - f pc) (a fabricated answer is less likely in a clean round).
    clean = 1.0 - f * pc
    share = f * (1.0 - pc) / clean if clean > 0 else 0.0
    level = s + (terms.fabricated - s) * share
    if q <= 0.0:
        return float(level**terms.power)
    if q >= 1.0:
        return 0.0
    r, beta = 1.0 - q, 1.0 - terms.alpha
    head, j, survive, decay = 0.0, 1, r, beta
    while decay >= _TAIL_EPS and survive > 0.0:
        head += survive * (level * (1.0 - decay)) ** terms.power
        j, survive, decay = j + 1, survive * r, decay * beta
    tail = survive / q * level**terms.power  # sum over k >= j of r**k, times the level
    cycle = 1.0 + terms.penalty_steps + r / q  # catch round + suspension + E[earning rounds]
    return float((head + tail) / cycle)


def cheat_ratio(fabricate: float, honest: float, terms: CheatTerms) -> float:
    """Reward of the cheating miner over the same miner's honest reward (< 1: cheating loses).

    ``honest`` must be > 0: a miner that earns nothing honestly gains from any cheat that is
    not caught for sure.
    """
    if not 0.0 < honest <= 1.0:
        raise ValueError(f"honest must be in (0, 1], got {honest!r}")
    return expected_reward(fabricate, honest, terms) / expected_reward(0.0, honest, terms)


def worst_ratio(
    honest: float, terms: CheatTerms, fractions: Sequence[float] | None = None
) -> tuple[float, float]:
    """(the fabricated fraction that pays best, its ratio) over ``fractions`` (default a grid
    from 0.001 to 1 dense near 0, where the gain per catch is largest)."""
    grid = list(fractions) if fractions is not None else default_fractions()
    if not grid or any(not 0.0 < f <= 1.0 for f in grid):
        raise ValueError("fractions must be a non-empty list of values in (0, 1]")
    best = max(grid, key=lambda f: cheat_ratio(f, honest, terms))
    return best, cheat_ratio(best, honest, terms)


def default_fractions() -> list[float]:
    """0.001 .. 0.01 in steps of 0.001, then 0.01 .. 1 in steps of 0.01."""
    return [k / 1000 for k in range(1, 10)] + [k / 100 for k in range(1, 101)]


def first_fraction_slope(honest: float, terms: CheatTerms, eps: float = 1e-7) -> float:
    """d(ratio)/df as f -> 0: what the first fabricated answers gain (> 0) or cost (< 0), in
    honest rewards per unit of f. Negative means even the tiniest fraction loses."""
    return (cheat_ratio(eps, honest, terms) - 1.0) / eps


def cheating_never_pays(honest: float, terms: CheatTerms) -> bool:
    """No fabricated fraction pays: the ratio is below 1 on the whole default grid and falls
    from f = 0 (the grid's gaps near 0 are covered by the slope)."""
    return worst_ratio(honest, terms)[1] < 1.0 and first_fraction_slope(honest, terms) < 0.0


def break_even_honest(terms: CheatTerms, *, tol: float = 1e-4) -> float:
    """The lowest honest score at which no fabricated fraction pays (bisection; cheating only
    pays less as ``honest`` rises: a better miner risks more)."""
    lo, hi = 1e-6, 1.0
    if not cheating_never_pays(hi, terms):
        return math.inf
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if cheating_never_pays(mid, terms):
            hi = mid
        else:
            lo = mid
    return hi
