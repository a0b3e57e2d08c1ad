"""The localnet's validators: their options, their rows per epoch read from a real devnet
(manual clock, weights set through the real SDK) and real state databases, the summary's
``validators`` section with its agreement verdict, and the simulator's prediction."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from neurons.localnet.consensus import (
    ValidatorRow,
    ValidatorWatcher,
    agreement,
    summarize_validators,
    validators_summary_table,
    validators_table,
)
from neurons.localnet.plan import Options
from neurons.localnet.predict import predict_yields
from neurons.localnet.validators import (
    COPIER,
    HONEST,
    ValidatorPlan,
    Warmup,
    default_stakes,
    parse_stakes,
    parse_validators,
    process_spec,
)
from neurons.validator.store import StepRow, Store
from subnet.chain.devnet import Devnet
from subnet.chain.network import open_chain
from subnet.config import load_config
from subnet.errors import ConfigError
from subnet.wallets import coldkey_address, create_wallet, hotkey_address

TAO = 10**9
TEMPO = 5


def test_validators_are_a_count_or_roles_and_the_first_is_honest():
    assert parse_validators("3", "hf") == ((HONEST, "hf"),) * 3
    assert parse_validators("validator,validator:vllm,validator-copier", "hf") == (
        (HONEST, "hf"),
        (HONEST, "vllm"),
        (COPIER, "hf"),
    )
    for bad, why in (
        ("0", "at least one"),
        ("", "at least one"),
        ("validator,judge", "unknown role 'judge'"),
        ("validator:tpu", "unknown engine 'tpu'"),
        ("validator-copier,validator", "the first validator must be honest"),
    ):
        with pytest.raises(ConfigError, match=why):
            parse_validators(bad, "hf")


def test_stakes_default_to_an_unequal_spread_and_are_checked():
    assert default_stakes(1) == (1000.0,)
    assert default_stakes(3) == (1000.0, 750.0, 500.0)
    assert default_stakes(6)[-2:] == (250.0, 250.0)
    assert parse_stakes(None, 3) == default_stakes(3)
    assert parse_stakes("1000,800,400", 3) == (1000.0, 800.0, 400.0)
    with pytest.raises(ConfigError, match="3 validators need 3 stakes, got 2"):
        parse_stakes("1,2", 3)
    with pytest.raises(ConfigError, match="every stake must be > 0"):
        parse_stakes("1,0,2", 3)
    with pytest.raises(ConfigError, match="expected numbers"):
        parse_stakes("1,a,2", 3)


def _plans(tmp_path: Path, uids: dict[str, int], hotkeys: dict[str, str]) -> list[ValidatorPlan]:
    roles = {"v1": HONEST, "v2": HONEST, "v3": COPIER}
    stakes = {"v1": 500.0, "v2": 300.0, "v3": 200.0}
    return [
        ValidatorPlan(
            name,
            roles[name],
            "hf",
            uids[name],
            hotkeys[name],
            stakes[name],
            "validator" if name == "v1" else name,
            tmp_path / "state" / name,
        )
        for name in ("v1", "v2", "v3")
    ]


def test_command_lines_give_each_validator_its_own_wallet_state_and_log(tmp_path):
    plans = _plans(tmp_path, {"v1": 1, "v2": 2, "v3": 3}, {"v1": "a", "v2": "b", "v3": "c"})
    manifest = {
        "network": "devnet:/x",
        "netuid": 1,
        "hotkey": "default",
        "wallet_path": "/w",
        "validators": ["v1", "v2", "v3"],
    }
    models = {"teacher": tmp_path / "teacher"}
    opts = Options(folder=tmp_path, step_blocks=3)
    specs = [process_spec(opts, tmp_path, manifest, models, p, ("sort",)) for p in plans]
    assert [s.name for s in specs] == ["validator", "v2", "v3"]
    assert [s.log.name for s in specs] == ["validator.log", "v2.log", "v3.log"]
    for spec, plan in zip(specs, plans, strict=True):
        argv = " ".join(spec.argv)
        assert f"wallet.name={plan.name}" in argv and f"state_dir={plan.state_dir}" in argv
        assert spec.critical
    honest, copier = " ".join(specs[1].argv), specs[2].argv
    assert "-m subnet.cli validator" in honest and "validator.teacher=" in honest
    assert copier[1:4] == ("-m", "neurons.demo_fixtures.copier", "validators")
    assert "validator.step_blocks=3" in copier and not any("teacher" in a for a in copier)


@pytest.fixture
def subnet(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    names = ("owner", "v1", "v2", "v3", "m1", "m2")
    wallets = {n: create_wallet(n, "default", tmp_path / "wallets") for n in names}
    owner = wallets["owner"]
    path = tmp_path / "chain.sqlite"
    net = Devnet.create(
        path,
        block_time=0.02,
        clock="manual",
        sudo_ss58=coldkey_address(owner),
        enable_mev_shield=False,
    )
    net.add_subnet(coldkey_address(owner), hotkey_address(owner), tempo=TEMPO, weights_rate_limit=1)
    uids = {
        n: net.register(1, hotkey_address(w), coldkey_address(w))
        for n, w in wallets.items()
        if n != "owner"
    }
    hotkeys = {n: hotkey_address(w) for n, w in wallets.items()}
    plans = _plans(tmp_path, uids, hotkeys)
    for p in plans:
        net.set_stake(1, p.hotkey, int(p.stake * TAO))
    net.advance(TEMPO + 1)
    yield net, wallets, uids, path, plans
    net.close()


def _record(plan: ValidatorPlan, steps: int, block: int, weights: dict[int, float]) -> None:
    store = Store(plan.db)
    try:
        for k in range(steps):
            store.commit_step(StepRow(k + 1, block + k, "s", "d", 2, 8, None, 1.0), [], [], [])
        store.record_weight_set(
            block=block,
            step=steps,
            weights=weights,
            success=True,
            attempts=1,
            matches=True,
            error="",
            read_back={},
        )
    finally:
        store.close()


async def test_validator_rows_measure_vtrust_dividends_and_agreement(subnet):
    net, wallets, uids, path, plans = subnet
    m1, m2 = uids["m1"], uids["m2"]
    watch = ValidatorWatcher(path, 1, plans)
    watch.started()
    honest_row, odd_row = {m1: 0.7, m2: 0.3}, {m1: 0.2, m2: 0.8}
    async with open_chain(f"devnet:{path}") as chain:
        await chain.set_weights(1, wallets["v1"], honest_row)
        await chain.set_weights(1, wallets["v2"], honest_row)
        await chain.set_weights(1, wallets["v3"], odd_row)  # a copier that copied badly
    _record(plans[0], 3, 10, honest_row)
    _record(plans[1], 2, 10, honest_row)
    net.advance(TEMPO)
    watch.begin()
    epochs = []
    for _ in range(2):
        net.advance(TEMPO)
        epochs.append(watch.poll())
    by_name = {r.name: r for r in epochs[-1]}
    assert by_name["v1"].vtrust == pytest.approx(1.0, abs=1e-3)
    assert by_name["v3"].vtrust == pytest.approx(0.5, abs=1e-3)  # 0.2 + min(0.8, 0.3)
    assert by_name["v1"].cosine == pytest.approx(1.0, abs=1e-3)
    assert by_name["v3"].cosine is not None and by_name["v3"].cosine < 0.8
    assert (by_name["v1"].steps, by_name["v1"].weight_sets) == (3, 1)
    assert (by_name["v3"].steps, by_name["v3"].weight_sets) == (0, 0)
    assert all(r.earned_epoch > 0 for r in epochs[-1])
    summary = summarize_validators(plans, watch.start_stake, epochs)
    rows = {v["name"]: v for v in summary["validators"]}
    # shares are written rounded to 6 decimals: half a unit of the 6th decimal per validator
    rounding = len(rows) * 0.5e-6 + 1e-12
    assert sum(v["dividend_share"] for v in rows.values()) == pytest.approx(1.0, abs=rounding)
    assert rows["v1"]["stake_share"] == pytest.approx(0.5, abs=1e-3)
    assert rows["v3"]["dividend_yield"] < 1.0 < rows["v1"]["dividend_yield"]
    for field in ("role", "stake_share", "vtrust", "dividend_share", "dividend_yield"):
        assert field in rows["v2"]
    assert rows["v2"]["cosine_to_consensus"] == pytest.approx(1.0, abs=1e-3)
    assert summary["agreement"]["honest_agree"] is True
    assert summary["agreement"]["min_pairwise_cosine"] == pytest.approx(1.0)
    console = Console(record=True, width=200)
    console.print(validators_table(epochs[-1]))
    console.print(validators_summary_table(summary))
    text = console.export_text()
    assert "validator-copier" in text and "yield" in text and "cosine" in text


def test_honest_validators_that_disagree_are_reported_so():
    plans = [
        ValidatorPlan("a", HONEST, "hf", 1, "ha", 1.0, "validator", Path("/a")),
        ValidatorPlan("b", HONEST, "hf", 2, "hb", 1.0, "b", Path("/b")),
    ]

    def row(uid: int, vtrust: float, cos: float, weights: dict[int, float]) -> ValidatorRow:
        return ValidatorRow(uid, "x", HONEST, 1.0, vtrust, 0.5, 1.0, 1.0, cos, 5, 1, weights)

    verdict = agreement(plans, [row(1, 0.99, 0.99, {3: 1.0}), row(2, 0.85, 0.97, {4: 1.0})])
    assert verdict["honest_agree"] is False and verdict["min_vtrust"] == 0.85
    assert verdict["min_pairwise_cosine"] == 0.0
    verdict = agreement(plans, [row(1, 0.99, 0.99, {3: 1.0}), row(2, 0.95, 0.9, {3: 1.0})])
    assert verdict["honest_agree"] is False and verdict["min_cosine_to_consensus"] == 0.9


def test_warmup_waits_for_honest_weights_after_the_warm_up_and_one_copy(tmp_path):
    plans = _plans(tmp_path, {"v1": 1, "v2": 2, "v3": 3}, {"v1": "a", "v2": "b", "v3": "c"})
    said: list[str] = []
    warm = Warmup(plans, warmup_steps=3, say=said.append)
    assert not warm.poll()
    assert warm.waiting() == [
        "validator (no step committed)",
        "v2 (no step committed)",
        "v3 (no weights copied)",
    ]
    _record(plans[0], 3, 10, {4: 1.0})
    _record(plans[1], 2, 10, {4: 1.0})  # weights from 2 steps: not yet warm
    store = Store(plans[2].db)
    store.record_weight_set(
        block=12,
        step=0,
        weights={4: 1.0},
        success=True,
        attempts=1,
        matches=True,
        error="",
        read_back={},
    )
    store.close()
    assert not warm.poll()
    assert warm.waiting() == ["v2 (no weights set after its warm-up)"]
    _record(plans[1], 0, 20, {4: 1.0})  # a later set, still from step 0 of that record
    assert not warm.poll()
    store = Store(plans[1].db)
    store.commit_step(StepRow(3, 30, "s", "d", 2, 8, None, 1.0), [], [], [])
    store.record_weight_set(
        block=30,
        step=3,
        weights={4: 1.0},
        success=True,
        attempts=1,
        matches=True,
        error="",
        read_back={},
    )
    store.close()
    assert warm.poll() and warm.waiting() == []
    assert said == [
        "   validator committed its first step",
        "   validator set weights from 3 steps of scores",
        "   v2 committed its first step",
        "   v3 copied weights for the first time",
        "   v2 set weights from 3 steps of scores",
    ]


def test_the_simulator_predicts_the_copier_earns_less_than_its_stake():
    plans = [
        ValidatorPlan("a", HONEST, "hf", 1, "ha", 1000.0, "validator", Path("/a")),
        ValidatorPlan("b", HONEST, "hf", 2, "hb", 667.0, "b", Path("/b")),
        ValidatorPlan("c", COPIER, "hf", 3, "hc", 333.0, "c", Path("/c")),
    ]
    from subnet.chain.devnet.hparams import DEFAULTS

    hp = {**DEFAULTS, "tempo": 20}
    cfg = load_config(None, env={})
    got = predict_yields(plans, 5, hp, cfg, steps_per_epoch=5, epochs=6)
    assert got["scenario"] == "copier" and got["epochs_window"] == 6
    assert got["max_fast_exact_deviation"] < 1e-6
    yields = got["yields"]
    assert yields["c"]["steady"] < 1.0 < yields["a"]["steady"]
    assert yields["c"]["window"] < yields["c"]["steady"]  # bonds take epochs to build
    assert predict_yields(plans[:2], 5, hp, cfg, steps_per_epoch=5, epochs=6) == {}
