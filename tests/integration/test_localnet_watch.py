"""The localnet's watcher, tables, summary JSON, chart and ``--status`` on a real devnet (manual
clock, weights set through the real SDK) and a real validator state database."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from rich.console import Console

from neurons.localnet.cli import status
from neurons.localnet.plan import DEFAULT_MINERS, model_variant, parse_miners
from neurons.localnet.run import STATE_FILE, ordering_checks
from neurons.localnet.view import epoch_table, summarize, summary_table, write_chart
from neurons.localnet.watch import Member, Snapshot, Watcher, read_validator
from neurons.validator.participant import Miner
from neurons.validator.store import (
    AnswerRow,
    EmaRow,
    ModelWatch,
    SpotCheckRow,
    StepRow,
    Store,
)
from subnet.chain.devnet import Devnet
from subnet.chain.network import open_chain
from subnet.errors import ConfigError
from subnet.wallets import coldkey_address, create_wallet, hotkey_address

TAO = 10**9
ROLES = ("distilled", "undistilled", "adversary-fabricated")


def _answer(uid: int, hotkey: str, task: str, score: float, cause: str = "ok") -> AnswerRow:
    return AnswerRow(
        Miner(uid, hotkey),
        task,
        score,
        cause,
        "",
        1.0 if cause == "ok" else 0.0,
        score,
        score,
        0.5,
        None,
        None,
        None,
        None,
        None,
        8,
        0.01,
        0.1,
        False,
        None,
        None,
        {"engine": "test"},
    )


@pytest.fixture
def subnet(tmp_path):
    wallets = {
        n: create_wallet(n, "default", tmp_path / "wallets") for n in ("owner", "vali", *ROLES)
    }
    net = Devnet.create(
        tmp_path / "chain.sqlite",
        block_time=0.1,
        clock="manual",
        sudo_ss58=coldkey_address(wallets["owner"]),
        enable_mev_shield=False,
    )
    net.add_subnet(
        coldkey_address(wallets["owner"]),
        hotkey_address(wallets["owner"]),
        tempo=5,
        weights_rate_limit=1,
    )
    uids = {
        n: net.register(1, hotkey_address(w), coldkey_address(w))
        for n, w in wallets.items()
        if n != "owner"
    }
    net.set_stake(1, hotkey_address(wallets["vali"]), 1000 * TAO)
    yield net, wallets, uids
    net.close()


async def test_one_snapshot_per_epoch_with_emission_measured_from_the_start(subnet, tmp_path):
    net, wallets, uids = subnet
    members = tuple(Member(uids[r], hotkey_address(wallets[r]), r) for r in ROLES)
    db_path = tmp_path / "validator" / "validator.sqlite"
    watcher = Watcher(tmp_path / "chain.sqlite", 1, db_path, members)
    watcher.begin()  # no validator database yet: empty views, no error
    partial, closed = watcher.poll(0.0, {})  # no epoch ran since begin(): a live view
    assert not closed and partial.epoch == 1 and all(m.answers == 0 for m in partial.miners)

    store = Store(db_path)
    hk = {r: hotkey_address(wallets[r]) for r in ROLES}
    u = {r: uids[r] for r in ROLES}
    store.commit_step(
        StepRow(1, 3, "seed", "digest", 3, 6, None, 0.5),
        [
            _answer(u["distilled"], hk["distilled"], "t1", 0.9),
            _answer(u["distilled"], hk["distilled"], "t2", 0.7),
            _answer(u["undistilled"], hk["undistilled"], "t1", 0.4),
            _answer(u["undistilled"], hk["undistilled"], "t2", 0.2),
            _answer(u["adversary-fabricated"], hk["adversary-fabricated"], "t1", 0.0, "fabricated"),
            _answer(
                u["adversary-fabricated"], hk["adversary-fabricated"], "t2", 0.0, "dist_mismatch"
            ),
        ],
        [],
        [
            EmaRow(u["distilled"], hk["distilled"], 0.8),
            EmaRow(u["undistilled"], hk["undistilled"], 0.3),
            EmaRow(u["adversary-fabricated"], hk["adversary-fabricated"], 0.0, 20),
        ],
        checks=[
            SpotCheckRow(Miner(u["distilled"], hk["distilled"]), "t1", "passed", 0),
            SpotCheckRow(Miner(u["undistilled"], hk["undistilled"]), "t2", "unavailable", 0),
            SpotCheckRow(
                Miner(u["adversary-fabricated"], hk["adversary-fabricated"]), "t2", "failed", 0
            ),
            SpotCheckRow(
                Miner(u["adversary-fabricated"], hk["adversary-fabricated"]), "t1", "skipped", 0
            ),
        ],
    )
    store.save_model_watch(
        [
            ModelWatch(hk[r], f"{n:064x}", "miner", 1, 1, 1, "ready", "", 1)
            for n, r in enumerate(ROLES)
        ]
    )
    weights = {u["distilled"]: 0.8, u["undistilled"]: 0.2}
    store.record_weight_set(
        block=3,
        step=1,
        weights=weights,
        success=True,
        attempts=1,
        matches=True,
        error="",
        read_back=weights,
    )
    net.advance(1)  # weights set at a miner's registration block are masked (as on chain)
    async with open_chain(f"devnet:{tmp_path / 'chain.sqlite'}") as chain:
        await chain.set_weights(1, wallets["vali"], weights)
    net.advance(1)
    partial, closed = watcher.poll(11.0, {})  # the step is in, the epoch not yet
    assert not closed and {m.role: m.answers for m in partial.miners}["distilled"] == 2
    net.advance(4)  # one epoch with the weights in
    snap, closed = watcher.poll(12.0, {u["undistilled"]: False})
    assert closed and snap.epoch == 1 and snap.steps == 1
    rows = {m.role: m for m in snap.miners}
    assert rows["distilled"].answers == 2 and rows["distilled"].score == pytest.approx(0.8)
    assert rows["distilled"].ema == 0.8 and rows["distilled"].weight == 0.8
    assert rows["adversary-fabricated"].causes == {"fabricated": 1, "dist_mismatch": 1}
    assert rows["adversary-fabricated"].suspended == 20 and rows["distilled"].suspended == 0
    assert rows["distilled"].emission > rows["undistilled"].emission > 0
    assert rows["adversary-fabricated"].emission == 0
    assert not rows["undistilled"].alive and rows["distilled"].alive
    assert rows["distilled"].emission == rows["distilled"].emission_total

    net.advance(5)  # a second epoch, no new steps: same weights, more emission
    snap2, closed = watcher.poll(24.0, {})
    assert closed and snap2.epoch == 2
    rows2 = {m.role: m for m in snap2.miners}
    assert rows2["distilled"].answers == 0 and rows2["distilled"].score is None
    assert rows2["distilled"].emission_total == pytest.approx(
        rows["distilled"].emission_total + rows2["distilled"].emission
    )
    store.close()

    miners = summarize([snap, snap2])
    by_role = {m["role"]: m for m in miners}
    assert by_role["distilled"]["answers"] == 2
    assert by_role["distilled"]["mean_score"] == pytest.approx(0.8)
    assert by_role["adversary-fabricated"]["causes"] == {"fabricated": 1, "dist_mismatch": 1}
    assert by_role["distilled"]["model_source"] == "miner"
    assert by_role["distilled"]["spot_checks"] == {
        "checked": 1,
        "passed": 1,
        "failed": 0,
        "unavailable": 0,
    }
    assert by_role["undistilled"]["spot_checks"]["unavailable"] == 1
    assert by_role["adversary-fabricated"]["spot_checks"] == {
        "checked": 1,  # the drawn answer that had already failed a gate is no check
        "passed": 0,
        "failed": 1,
        "unavailable": 0,
    }
    assert ordering_checks(miners) == {
        "distilled earns more than undistilled": True,
        "adversaries earn nothing": True,
    }
    assert Snapshot.from_json(json.loads(json.dumps(snap.to_json()))) == snap

    console = Console(record=True, width=200)
    console.print(epoch_table(snap))
    console.print(summary_table(miners, 2))
    text = console.export_text()
    assert "fabricatedx1" in text and "undistilled (dead)" in text and "summary: 2 epochs" in text
    assert "(suspended 20)" in text
    chart = write_chart([snap, snap2], tmp_path / "out" / "chart.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_validator_view_of_a_failed_weight_set_keeps_the_last_good_weights(tmp_path):
    store = Store(tmp_path / "v.sqlite")
    store.record_weight_set(
        block=1,
        step=1,
        weights={3: 1.0},
        success=True,
        attempts=1,
        matches=True,
        error="",
        read_back={3: 1.0},
    )
    store.record_weight_set(
        block=9,
        step=2,
        weights={4: 1.0},
        success=False,
        attempts=3,
        matches=None,
        error="SettingWeightsTooFast",
        read_back={},
    )
    store.close()
    view = read_validator(tmp_path / "v.sqlite", 0)
    assert view.weights == {3: 1.0} and view.weight_error == "SettingWeightsTooFast"


def test_ordering_checks_fail_when_the_claims_do_not_hold():
    miners = [
        {"role": "distilled", "emission_total": 1.0},
        {"role": "undistilled", "emission_total": 2.0},
        {"role": "adversary-wrong-model", "emission_total": 0.5},
    ]
    assert ordering_checks(miners) == {
        "distilled earns more than undistilled": False,
        "adversaries earn nothing": False,
    }
    assert ordering_checks([{"role": "teacher", "emission_total": 1.0}]) == {}


def test_parse_miners_accepts_roles_and_engines_and_names_bad_input():
    default = parse_miners(DEFAULT_MINERS, "vllm")
    assert [r for r, _ in default] == [
        "distilled",
        "undistilled",
        "teacher",
        "adversary-wrong-model",
        "adversary-fabricated",
        "adversary-selective",
    ]
    assert [e for _, e in default] == ["vllm", "vllm", "vllm", "hf", "hf", "hf"]
    assert parse_miners("teacher:hf, distilled", "vllm") == (
        ("teacher", "hf"),
        ("distilled", "vllm"),
    )
    with pytest.raises(ConfigError, match="unknown role 'cheater'"):
        parse_miners("distilled,cheater", "hf")
    with pytest.raises(ConfigError, match="unknown engine 'tpu'"):
        parse_miners("distilled:tpu", "hf")
    with pytest.raises(ConfigError, match="at least one"):
        parse_miners(" , ", "hf")


def test_model_variant_has_its_own_digest_and_is_made_once(tmp_path):
    from distill.identity import model_digest

    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"hidden": 8}))
    (base / "model.safetensors").write_bytes(b"\0" * 64)
    variant = model_variant(base, tmp_path / "models" / "v", "adversary-x")
    assert json.loads((variant / "config.json").read_text())["_variant"] == "adversary-x"
    assert model_digest(variant) != model_digest(base)
    stamp = (variant / "config.json").stat().st_mtime_ns
    assert model_variant(base, variant, "adversary-x") == variant
    assert (variant / "config.json").stat().st_mtime_ns == stamp


def test_model_variant_is_remade_when_its_base_model_changes(tmp_path):
    """A rebuilt tiny world must not leave an adversary committing the old world's model."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"vocab_size": 287}))
    (base / "model.safetensors").write_bytes(b"\0" * 64)
    variant = model_variant(base, tmp_path / "models" / "v", "adversary-x")
    (base / "config.json").write_text(json.dumps({"vocab_size": 279}))
    (base / "model.safetensors").write_bytes(b"\1" * 64)
    model_variant(base, variant, "adversary-x")
    assert json.loads((variant / "config.json").read_text())["vocab_size"] == 279
    assert (variant / "model.safetensors").read_bytes() == b"\1" * 64


def test_status_reads_a_finished_run_and_refuses_a_missing_one(tmp_path):
    console = Console(record=True, width=200)
    with pytest.raises(ConfigError, match="no localnet"):
        status(tmp_path, console)
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        status(tmp_path, console)
    snap = Snapshot(3, 7, 140, 60.0, 12, ())
    state = {
        "pid": os.getpid(),
        "phase": "ended",
        "ended": 1.0,
        "exit_code": 0,
        "network": "devnet:x",
        "netuid": 1,
        "validator": {"pid": 999999, "log": "v.log"},
        "miners": [
            {
                "name": "miner1",
                "role": "distilled",
                "uid": 2,
                "port": 1234,
                "pid": 999998,
                "log": "m.log",
            }
        ],
        "deaths": [{"name": "miner1-distilled", "reason": "exited with code 1", "log": "m.log"}],
        "epochs": [snap.to_json()],
        "phases": {"setup": 1.0},
    }
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    assert status(tmp_path, console) == 3  # ended: not running
    text = console.export_text()
    assert "not running" in text and "miner1-distilled exited with code 1" in text
    assert "epoch 3" in text and "setup 1.0 s" in text
    state["ended"] = None  # a live run: this very process plays the localnet's pid
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    assert status(Path(tmp_path), console) == 0
    assert f"running (pid {os.getpid()})" in console.export_text()


async def test_setup_creates_a_devnet_reuses_it_and_refuses_other_settings(tmp_path, monkeypatch):
    from neurons.localnet.plan import Options
    from neurons.localnet.run import Localnet

    monkeypatch.chdir(tmp_path)
    console = Console(record=True, width=200)
    opts = Options(
        folder=tmp_path / "ln",
        miners=parse_miners("distilled,teacher", "hf"),
        tempo=10,
        block_time=0.5,
    )
    manifest = await Localnet(opts, console)._devnet()
    assert manifest["miners"] == ["miner1", "miner2"] and manifest["tempo"] == 10
    assert manifest["clock"] == "wall" and manifest["network"].endswith("ln/devnet/devnet.sqlite")
    again = await Localnet(opts, console)._devnet()
    assert again == manifest and "reusing the devnet" in console.export_text()
    other = Options(folder=tmp_path / "ln", miners=opts.miners, tempo=20, block_time=0.5)
    with pytest.raises(ConfigError, match="--fresh"):
        await Localnet(other, console)._devnet()
    more = Options(
        folder=tmp_path / "ln", miners=parse_miners(DEFAULT_MINERS, "hf"), tempo=10, block_time=0.5
    )
    with pytest.raises(ConfigError, match="2 miners"):
        await Localnet(more, console)._devnet()
    fresh = await Localnet(
        Options(folder=tmp_path / "ln", miners=more.miners, tempo=20, block_time=0.5, fresh=True),
        console,
    )._devnet()
    assert fresh["tempo"] == 20 and len(fresh["miners"]) == len(more.miners) == 6
    assert fresh["network"] == manifest["network"]


def test_the_validator_runs_the_real_path_and_the_selective_adversary_gets_public_settings(
    tmp_path,
):
    """No local model roots and no forced check fraction for the validator (it fetches every
    model and draws checks at the default); the selective adversary is told only what a
    subnet.toml publishes (task families, tasks per step)."""
    from neurons.localnet.plan import MinerPlan, Options, miner_spec, validator_spec

    opts = Options(folder=tmp_path, miners=parse_miners("distilled,adversary-selective", "hf"))
    manifest = {
        "network": "devnet:x",
        "netuid": 1,
        "hotkey": "default",
        "wallet_path": str(tmp_path),
        "validators": ["validator1"],
    }
    models = {r: tmp_path / r for r in ("teacher", "distilled", "adversary-selective")}
    argv = " ".join(validator_spec(opts, tmp_path, manifest, models, ("add", "sort")).argv)
    assert "model_roots" not in argv and "spot_check_fraction" not in argv
    assert "validator.model_cache=2" in argv
    plan = MinerPlan("miner2", "adversary-selective", "hf", 2, "5F", 9000)
    sel = " ".join(miner_spec(opts, tmp_path, manifest, models, plan, ("add", "sort")).argv)
    assert "neurons.demo_fixtures.launch selective" in sel
    assert "validator.task_families=add,sort" in sel and "validator.tasks_per_step=4" in sel
    honest = MinerPlan("miner1", "distilled", "hf", 1, "5E", 9001)
    assert "task_families" not in " ".join(
        miner_spec(opts, tmp_path, manifest, models, honest, ("add",)).argv
    )
