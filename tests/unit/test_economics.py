"""What cheating pays (scoring/economics.py): checked against a direct simulation of the very
rule the validator runs (``scoring.aggregate.advance_ema``), and at the shipped defaults every
fabricated fraction earns less than honesty."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scoring.aggregate import advance_ema
from scoring.config import VerifyConfig, WeightsConfig
from scoring.economics import (
    CheatTerms,
    break_even_honest,
    cheat_ratio,
    default_fractions,
    escape_probability,
    expected_reward,
    round_catch_probability,
    worst_ratio,
)

TASKS_PER_STEP = 4  # validator.tasks_per_step's default


def defaults() -> CheatTerms:
    w, v = WeightsConfig(), VerifyConfig()
    return CheatTerms(
        check=v.spot_check_fraction,
        answers=TASKS_PER_STEP,
        penalty_steps=w.lie_penalty_steps,
        alpha=w.ema_alpha,
        power=w.power,
    )


def test_round_catch_probability() -> None:
    assert round_catch_probability(0.0, 0.5, 4) == 0.0
    assert round_catch_probability(1.0, 1.0, 1) == 1.0
    assert round_catch_probability(1.0, 0.5, 4) == pytest.approx(1 - 0.5**4)
    assert round_catch_probability(0.5, 0.5, 4, detect=0.5) == pytest.approx(1 - 0.875**4)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError):
            round_catch_probability(bad, 0.5, 4)
    with pytest.raises(ValueError):
        round_catch_probability(0.5, 0.5, -1)


def _simulate(f: float, honest: float, t: CheatTerms, miners: int, rounds: int) -> float:
    """The validator's own EMA rule on ``miners`` independent cheaters at once, on random checks
    (the model's claim), averaged after a burn-in of ``rounds // 4``."""
    rng = np.random.default_rng(7)
    ema, held = np.zeros(miners), np.zeros(miners, dtype=np.int64)
    total, burn = 0.0, rounds // 4
    for k in range(rounds):
        rate = np.where(held > 0, 0.0, f)[:, None]  # honest while suspended
        fab = rng.random((miners, t.answers)) < rate
        checked = rng.random((miners, t.answers)) < t.check * t.detect
        score = np.where(fab, t.fabricated, honest).mean(axis=1)
        upd = advance_ema(
            ema,
            held,
            score,
            np.ones(miners, bool),
            (fab & checked).any(axis=1),
            t.alpha,
            t.penalty_steps,
        )
        ema, held = upd.ema, upd.suspended
        if k >= burn:
            total += float(np.mean(ema**t.power))
    return total / (rounds - burn)


@pytest.mark.parametrize(("f", "honest"), [(0.3, 0.5), (1.0, 0.7), (0.05, 0.4)])
def test_the_closed_form_matches_a_simulation_of_the_validator_rule(f: float, honest: float):
    t = CheatTerms(check=0.3, answers=4, penalty_steps=5, alpha=0.2, power=2.0)
    sim = _simulate(f, honest, t, miners=4000, rounds=400)
    assert expected_reward(f, honest, t) == pytest.approx(sim, rel=0.02)


def test_honest_reward_is_the_score_to_the_power() -> None:
    t = defaults()
    assert expected_reward(0.0, 0.6, t) == pytest.approx(0.6**t.power)
    assert cheat_ratio(0.0, 0.6, t) == pytest.approx(1.0)


def test_never_checked_cheating_pays() -> None:
    t = CheatTerms(check=0.0, answers=4, penalty_steps=20)
    assert cheat_ratio(0.5, 0.5, t) > 1.0  # why checks and the penalty exist


@given(
    honest=st.floats(0.05, 1.0),
    f=st.sampled_from(default_fractions()),
)
def test_at_the_defaults_every_fabricated_fraction_earns_less_than_honesty(
    honest: float, f: float
) -> None:
    assert cheat_ratio(f, honest, defaults()) < 1.0


def test_the_defaults_hold_down_to_weak_miners_and_the_old_default_did_not() -> None:
    t = defaults()
    floor = break_even_honest(t)
    assert floor < 0.05  # any miner scoring 5% honestly loses by fabricating
    assert worst_ratio(floor + 0.01, t)[1] < 1.0
    assert worst_ratio(max(floor - 0.01, 1e-3), t)[1] > 1.0
    old = CheatTerms(check=0.1, answers=4, penalty_steps=20, alpha=0.2, power=2.0)
    assert break_even_honest(old) > 0.1  # a check rate of 0.1 left weak miners a profit


def test_a_longer_penalty_or_more_checks_only_lowers_the_cheat() -> None:
    base = CheatTerms(check=0.2, answers=4, penalty_steps=5)
    longer = CheatTerms(check=0.2, answers=4, penalty_steps=40)
    more = CheatTerms(check=0.6, answers=4, penalty_steps=5)
    for f in (0.01, 0.2, 1.0):
        assert cheat_ratio(f, 0.5, longer) < cheat_ratio(f, 0.5, base)
        assert cheat_ratio(f, 0.5, more) < cheat_ratio(f, 0.5, base)


def test_escape_probability() -> None:
    assert escape_probability(0.25, 40) == pytest.approx(0.75**40)
    assert escape_probability(0.0, 10) == 1.0 and escape_probability(1.0, 1) == 0.0


@pytest.mark.parametrize(
    "bad",
    [
        {"check": 1.2},
        {"answers": 0},
        {"penalty_steps": -1},
        {"alpha": 0.0},
        {"power": float("inf")},
        {"detect": -0.1},
    ],
)
def test_bad_terms_are_refused(bad: dict[str, float]) -> None:
    values = {"check": 0.5, "answers": 4, "penalty_steps": 20, **bad}
    with pytest.raises(ValueError):
        CheatTerms(**values)  # type: ignore[arg-type]


def test_the_validator_guide_shows_the_table_the_code_computes() -> None:
    """README's economics table is ``scripts/economics_table.py``'s output for the defaults."""
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root / "scripts"))
    try:
        import economics_table
    finally:
        sys.path.remove(str(root / "scripts"))
    readme = (root / "README.md").read_text()
    block = readme.split("<!-- economics-table -->\n", 1)[1].split("<!-- /economics-table -->")[0]
    assert block == economics_table.table() + "\n", "run: python scripts/economics_table.py"
