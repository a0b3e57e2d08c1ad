"""Print the cheating-economics table of the validator guide (README) from the shipped defaults.

``python scripts/economics_table.py`` prints the markdown block the README carries between its
``economics-table`` markers; a test checks the two are equal, so the guide always shows what
``scoring/economics.py`` computes for the defaults in ``subnet.toml``.
"""

from __future__ import annotations

import sys
import textwrap

from scoring.config import VerifyConfig, WeightsConfig
from scoring.economics import (
    CheatTerms,
    break_even_honest,
    cheat_ratio,
    first_fraction_slope,
    round_catch_probability,
)

TASKS_PER_STEP = 4  # validator.tasks_per_step's default (subnet/config.py)
FRACTIONS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
HONEST = (0.1, 0.3, 0.5, 0.7, 0.9)


def default_terms(check: float | None = None) -> CheatTerms:
    w, v = WeightsConfig(), VerifyConfig()
    return CheatTerms(
        check=v.spot_check_fraction if check is None else check,
        answers=TASKS_PER_STEP,
        penalty_steps=w.lie_penalty_steps,
        alpha=w.ema_alpha,
        power=w.power,
    )


def table() -> str:
    t = default_terms()
    head = "| fabricated share f | caught per round | " + " | ".join(
        f"honest {s:.1f}" for s in HONEST
    )
    lines = [head + " |", "|" + " --- |" * (len(HONEST) + 2)]
    for f in FRACTIONS:
        q = round_catch_probability(f, t.check, t.answers)
        cells = " | ".join(f"{cheat_ratio(f, s, t):.3f}" for s in HONEST)
        lines.append(f"| {f:g} | {q:.3f} | {cells} |")
    slope = " | ".join(f"{first_fraction_slope(s, t):.1f}" for s in HONEST)
    lines.append(f"| slope as f -> 0 | | {slope} |")
    old = default_terms(0.1)
    notes = (
        f"Reward of the cheating miner over the same miner honest (below 1: cheating loses), "
        f"at spot_check_fraction {t.check:g}, {t.answers} answers a round, "
        f"lie_penalty_steps {t.penalty_steps}, ema_alpha {t.alpha:g}, power {t.power:g}; "
        f"the last row is d(ratio)/df at f = 0 (what the first fabricated answers cost). "
        f"Every f > 0 loses for every miner scoring at least "
        f"{break_even_honest(t):.3f} honestly; at spot_check_fraction 0.1 only above "
        f"{break_even_honest(old):.3f}."
    )
    return "\n".join([*lines, "", textwrap.fill(notes, 96)])


def main() -> int:
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
