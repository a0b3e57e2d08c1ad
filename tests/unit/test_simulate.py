"""Incentive simulator: public copier finding, overtaking, fast == exact, params, bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.causes import Role, counts_toward_ema
from scoring.config import WeightsConfig
from scoring.params import ParamError
from scoring.sim_chain import quantize_rows
from scoring.sim_population import ChainSim, MinerSpec, Population, ValidatorSpec
from scoring.sim_scenarios import SCENARIOS, build
from scoring.sim_validator import CAUSES, counted
from scoring.simulate import SimConfig, gini, simulate, with_param

EPOCHS = 60


def _copier_yield(beta: int, yuma3: bool = True) -> float:
    sc = build("copier", epochs=EPOCHS)
    # Weights that follow each round (no EMA smoothing) make consensus move every epoch:
    # the regime where a stale copy costs something (research/yuma.md §4.2).
    cfg = SimConfig(epochs=EPOCHS, exact_checks=1, weights=WeightsConfig(ema_alpha=1.0))
    cfg = with_param(with_param(cfg, "bonds_penalty", beta), "yuma3_enabled", yuma3)
    return simulate(sc.population, cfg).mean_yield("copier")


def test_copier_earns_less_than_stake_under_yuma3_bonds_penalty_1() -> None:
    # Public finding (lag-1 copier): 0.79 of stake share on Yuma3 with beta = 1, 0.99 with beta = 0.
    penalised, unpenalised = _copier_yield(65535), _copier_yield(0)
    assert 0.7 < penalised < 0.9
    assert 0.95 < unpenalised < 1.05
    assert unpenalised - penalised > 0.1


def test_honest_validators_earn_their_stake_share() -> None:
    sc = build("baseline", validators=6, miners=12, epochs=40)
    r = simulate(sc.population, SimConfig(epochs=40, exact_checks=0))
    y = r.validator_yield()[20:].mean(axis=0)
    assert np.allclose(y, 1.0, atol=0.05), y


@pytest.mark.parametrize("name", ["baseline", "newcomer"])
def test_better_miner_overtakes_within_bounded_epochs(name: str) -> None:
    sc = build(name, validators=6, miners=16, epochs=EPOCHS)
    r = simulate(sc.population, SimConfig(epochs=EPOCHS, exact_checks=0))
    assert sc.challenger and sc.incumbent
    before = r.overtake_epoch(sc.challenger, sc.incumbent, 0)
    assert before is None or before >= sc.event  # not ahead before its event
    took = r.overtake_epoch(sc.challenger, sc.incumbent, sc.event)
    assert took is not None and took <= 15
    k = r.miner_names.index(sc.challenger)
    assert r.miner_share[-10:, k].mean() > r.miner_share[-10:].max(axis=1).mean() * 0.9


def test_fast_engine_checked_against_exact_every_run() -> None:
    sc = build("newcomer", validators=5, miners=10, epochs=30)
    r = simulate(sc.population, SimConfig(epochs=30, exact_checks=4))
    assert len(r.exact_epochs) == 4
    assert r.max_deviation < 1e-6


def test_cheater_pays_less_when_caught_more_often() -> None:
    shares = []
    for check in (0.0, 0.5):
        sc = build("cheater", validators=4, miners=8, epochs=40, check=check)
        r = simulate(sc.population, SimConfig(epochs=40, exact_checks=0))
        shares.append(r.miner_share[20:, r.miner_names.index("cheater")].mean())
    assert shares[0] > 2 * shares[1]


def test_the_cheater_is_caught_at_the_validators_selection_rate() -> None:
    """The scenario's per-step catch is the economics function's, for the fraction it fakes."""
    from scoring.economics import round_catch_probability

    for f in (0.1, 1.0):
        sc = build("cheater", validators=3, miners=4, epochs=4, check=0.3, cheat_fraction=f)
        spec = sc.population.miners[sc.population.miner_index("cheater")]
        assert spec.cheat_caught == round_catch_probability(f, 0.3, 4)
        assert spec.cheat_fraction == f


def test_offline_validator_loses_dividends_after_cutoff() -> None:
    sc = build("offline", validators=4, miners=8, epochs=60)
    cfg = with_param(SimConfig(epochs=60, exact_checks=0), "activity_cutoff_factor", 3000)
    r = simulate(sc.population, cfg)
    y = r.validator_yield()[:, r.validator_names.index("v0")]
    assert y[: sc.event].mean() > 0.9
    assert y[-10:].max() == 0.0


def test_cabal_miner_clipped_to_consensus() -> None:
    sc = build("cabal", validators=8, miners=8, epochs=40)
    r = simulate(sc.population, SimConfig(epochs=40, exact_checks=0))
    k = r.miner_names.index("cabal_miner")
    # A minority's favourite gets no more than the majority gives it (kappa clipping).
    assert r.miner_share[20:, k].mean() < 0.05
    assert r.mean_yield(sc.focus_validator or "") < 0.9


def test_same_seed_same_result_and_scenarios_all_run() -> None:
    for name in SCENARIOS:
        sc = build(name, validators=3, miners=4, epochs=8)
        a = simulate(sc.population, SimConfig(epochs=8, exact_checks=1, seed=3))
        b = simulate(sc.population, SimConfig(epochs=8, exact_checks=0, seed=3))
        np.testing.assert_array_equal(a.miner_share, b.miner_share)
        assert np.all(a.miner_share.sum(axis=1) + a.owner_share <= 1 + 1e-9)


def test_full_subnet_prunes_lowest_emission_non_immune_miner() -> None:
    miners = (
        MinerSpec("good", (0.9, 0.9, 0.9)),
        MinerSpec("bad", (0.1, 0.1, 0.1)),
        MinerSpec("new", (0.8, 0.8, 0.8), arrive=5),
    )
    pop = Population(miners, (ValidatorSpec("v", 1.0), ValidatorSpec("w", 1.0)))
    chain = ChainSim(max_uids=5, immunity_period=360)  # owner + 2 validators + 2 slots
    r = simulate(pop, SimConfig(chain=chain, epochs=12, exact_checks=2))
    assert r.miner_share[-1, 1] == 0.0 and r.miner_share[-1, 2] > 0.2
    assert r.max_deviation < 1e-6


def test_with_param_routes_and_validates() -> None:
    cfg = SimConfig()
    assert with_param(cfg, "weights.power", 3.0).weights.power == 3.0
    assert with_param(cfg, "bonds_penalty", 0).chain.yuma.bonds_penalty == 0
    assert with_param(cfg, "commit_reveal_period", 3).chain.copier_lag() == 1
    cr = with_param(with_param(cfg, "commit_reveal_enabled", True), "commit_reveal_period", 3)
    assert cr.chain.copier_lag() == 3
    for key, value in [
        ("bonds_penalty", 70000),
        ("weights.nope", 1),
        ("weights.power", -1.0),
        ("nope", 1),
        ("speed.x", 1),
        ("immunity_period", 0),
    ]:
        with pytest.raises(ParamError):
            with_param(cfg, key, value)


def test_bad_population_rejected() -> None:
    with pytest.raises(ParamError):
        MinerSpec("m", (1.5, 0.5, 0.5))
    with pytest.raises(ParamError):
        ValidatorSpec("v", 1.0, behaviour="sneaky")
    with pytest.raises(ParamError):
        Population((MinerSpec("m", (0.5,) * 3),), (ValidatorSpec("v", 1.0, favourites=("x",)),))
    with pytest.raises(ParamError):
        build("nope")
    pop = Population((MinerSpec("m", (0.5,) * 3),), (ValidatorSpec("v", 1.0),))
    with pytest.raises(ParamError):
        simulate(pop, SimConfig(chain=dataclasses.replace(ChainSim(), max_uids=2), epochs=2))


@given(st.lists(st.floats(0, 1), min_size=1, max_size=30))
@settings(max_examples=50, deadline=None)
def test_gini_bounds(xs: list[float]) -> None:
    g = gini(np.array(xs))
    assert -1e-12 <= g <= 1.0
    assert gini(np.full(len(xs), 0.3)) == pytest.approx(0.0, abs=1e-12)


@given(st.lists(st.floats(0, 1e6), min_size=2, max_size=20))
@settings(max_examples=50, deadline=None)
def test_quantized_rows_are_max_upscaled_u16(xs: list[float]) -> None:
    q = quantize_rows(np.array([xs]))[0]
    assert q.min() >= 0 and q.max() <= 65535
    if max(xs) > 0:
        assert q.max() == 65535


def test_the_simulator_counts_answers_by_the_validators_rule() -> None:
    codes = np.array([[0, 1, 2]], dtype=np.int8)  # one simulated answer per cause code
    expected = [[counts_toward_ema(Role.MINER, c) for c in CAUSES]]
    assert counted(np.ones((1, 3), dtype=bool), codes).tolist() == expected
    assert not counted(np.zeros((1, 3), dtype=bool), codes).any()  # unobserved stays out
