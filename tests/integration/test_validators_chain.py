"""What many validators read from the chain, through the real SDK on the devnet (manual clock):
the weight rows in force (what a copier copies), each validator's vtrust, and commit-reveal
commits that the devnet records but cannot reveal."""

from __future__ import annotations

import logging

import pytest

from neurons.localnet.consensus import commit_reveal_note, read_chain_validators
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.store import Store
from neurons.validator.weights import WeightSetter
from subnet.chain.devnet import Devnet
from subnet.chain.network import open_chain
from subnet.wallets import coldkey_address, create_wallet, hotkey_address

TAO = 10**9
TEMPO = 5


@pytest.fixture
def subnet(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    names = ("owner", "v1", "v2", "m1", "m2")
    wallets = {n: create_wallet(n, "default", tmp_path / "wallets") for n in names}
    owner = wallets["owner"]
    net = Devnet.create(
        tmp_path / "chain.sqlite",
        block_time=0.02,
        clock="manual",
        sudo_ss58=coldkey_address(owner),
        enable_mev_shield=False,
    )
    net.add_subnet(coldkey_address(owner), hotkey_address(owner), tempo=TEMPO, weights_rate_limit=1)
    uids = {}
    for name in names[1:]:
        w = wallets[name]
        uids[name] = net.register(1, hotkey_address(w), coldkey_address(w))
    net.set_stake(1, hotkey_address(wallets["v1"]), 600 * TAO)
    net.set_stake(1, hotkey_address(wallets["v2"]), 400 * TAO)
    net.advance(TEMPO + 1)  # one epoch: the permits are stored
    yield net, wallets, uids, tmp_path / "chain.sqlite"
    net.close()


async def test_weight_rows_and_vtrust_are_what_the_epoch_computed(subnet):
    net, wallets, uids, path = subnet
    m1, m2 = uids["m1"], uids["m2"]
    async with open_chain(f"devnet:{path}") as chain:
        assert await chain.weight_rows(1) == {}
        await chain.set_weights(1, wallets["v1"], {m1: 0.75, m2: 0.25})
        await chain.set_weights(1, wallets["v2"], {m1: 0.25, m2: 0.75})
        rows = await chain.weight_rows(1)
        assert rows.keys() == {uids["v1"], uids["v2"]}
        assert rows[uids["v1"]] == pytest.approx({m1: 0.75, m2: 0.25}, abs=1e-4)
        net.advance(TEMPO)
        mg = await chain.metagraph(1, max_age_blocks=0)
    view = read_chain_validators(path, 1)
    # 60% of the stake puts m1 at 0.75, 40% puts it at 0.25: consensus (the stake-weighted
    # median) sits at v1's levels, so v1's row survives clipping whole and v2 keeps 0.25 + 0.25.
    v1, v2 = mg.neurons[uids["v1"]], mg.neurons[uids["v2"]]
    assert v1.validator_trust == pytest.approx(1.0, abs=1e-3)
    assert v2.validator_trust == pytest.approx(0.5, abs=1e-3)
    assert view.vtrust[uids["v1"]] == v1.validator_trust
    assert view.vtrust[uids["v2"]] == v2.validator_trust
    assert view.consensus[m1] == pytest.approx(0.75, abs=1e-3)
    assert view.consensus[m2] == pytest.approx(0.25, abs=1e-3)
    assert view.rows[uids["v2"]] == pytest.approx(rows[uids["v2"]], abs=1e-4)
    assert view.dividends[uids["v1"]] > view.dividends[uids["v2"]] > 0


async def test_commit_reveal_is_recorded_and_the_localnet_says_it_cannot_reveal(subnet, caplog):
    net, wallets, uids, path = subnet
    off = commit_reveal_note(path, 1)
    assert off["enabled"] is False and "plaintext" in off["note"]
    async with open_chain(f"devnet:{path}") as chain:
        await chain.set_hyperparameter(1, wallets["owner"], "commit_reveal_weights_enabled", True)
        result = await chain.set_weights(1, wallets["v1"], {uids["m1"]: 1.0})
        assert result.path == "commit_reveal"
        assert await chain.weight_rows(1) == {}  # committed, not in force
        net.advance(2)  # past the rate limit: the validator's own setter commits too
        store = Store(path.parent / "validator.sqlite")
        setter = WeightSetter(
            chain, 1, wallets["v2"], store, ValidatorMetrics(), interval=1, retries=1, backoff=0
        )
        with caplog.at_level(logging.INFO, logger="subnet.validator.weights"):
            outcome = await setter.set(await chain.block(), 1, {uids["m2"]: 1.0})
        store.close()
        assert outcome.success and outcome.matches is None  # nothing to read back yet
        assert any("committed timelocked" in r.getMessage() for r in caplog.records)
    assert net.timelocked_commits(1) == 2
    on = commit_reveal_note(path, 1)
    assert on["enabled"] is True and on["commits_held"] == 2
    assert "cannot reveal" in on["note"] and "drand" in on["note"]
