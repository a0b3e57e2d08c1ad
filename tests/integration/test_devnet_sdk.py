"""The real bittensor SDK against the devnet: every validator/miner/owner path, end to end."""

from __future__ import annotations

from collections.abc import Iterator

import bittensor as bt
import pytest
from _devnet_kit import DevWallet, WrongSigner

from subnet.chain.devnet import Devnet, DevnetChainError

TAO = 10**9


@pytest.fixture
def wallets() -> dict[str, DevWallet]:
    return {n: DevWallet.of(n) for n in ("Alice", "Bob", "Charlie", "Dave")}


@pytest.fixture
def net(tmp_path, monkeypatch, wallets) -> Iterator[Devnet]:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    net = Devnet.create(tmp_path / "chain.db", block_time=0.05, clock="manual")
    owner = wallets["Alice"]
    net.add_subnet(owner.cold, owner.hot, tempo=10, weights_rate_limit=2)
    yield net
    net.close()


@pytest.fixture
async def client(net):
    async with bt.Client("local", substrate=net.substrate()) as client:
        yield client


async def test_register_both_paths(net, client, wallets):
    bob, charlie = wallets["Bob"], wallets["Charlie"]
    shielded = await client.execute(bt.BurnedRegister(netuid=1, hotkey_ss58=bob.hot), bob)
    assert shielded.success, shielded.message
    assert shielded.data.get("shielded") is True
    raw = bt.calls.SubtensorModule.burned_register(netuid=1, hotkey=charlie.hot)
    assert (await client.submit_call(raw, charlie)).success
    again = await client.submit_call(raw, charlie)
    assert not again.success and again.error.name == "HotKeyAlreadyRegisteredInSubNet"
    assert await client.read("uid", hotkey_ss58=charlie.hot, netuid=1) == 2


async def test_shielded_register_needs_the_shield(tmp_path, monkeypatch, wallets):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    net = Devnet.create(tmp_path / "plain.db", block_time=0.01, enable_mev_shield=False)
    net.add_subnet(wallets["Alice"].cold, wallets["Alice"].hot, tempo=10)
    async with bt.Client("local", substrate=net.substrate()) as client:
        assert await client.read("mev_shield_next_key") is None
        with pytest.raises(bt.ChainError, match="MEV Shield"):
            await client.execute(
                bt.BurnedRegister(netuid=1, hotkey_ss58=wallets["Bob"].hot), wallets["Bob"]
            )
        raw = bt.calls.SubtensorModule.burned_register(netuid=1, hotkey=wallets["Bob"].hot)
        assert (await client.submit_call(raw, wallets["Bob"])).success


async def test_serve_rejects_loopback(net, client, wallets):
    miner = wallets["Charlie"]
    net.register(1, miner.hot, miner.cold)
    bad = await client.execute(bt.ServeAxon(netuid=1, ip="127.0.0.1", port=8091), miner)
    assert not bad.success and bad.error.name == "InvalidIpAddress"
    ok = await client.execute(bt.ServeAxon(netuid=1, ip="127.0.0.2", port=8091), miner)
    assert ok.success, ok.message
    mg = await client.subnets.metagraph(1)
    assert mg.by_hotkey(miner.hot).axon == "127.0.0.2:8091"
    unregistered = await client.execute(
        bt.ServeAxon(netuid=1, ip="10.0.0.1", port=1), wallets["Dave"]
    )
    assert unregistered.error.name == "HotKeyNotRegisteredInNetwork"


async def test_commitments_set_and_read(net, client, wallets):
    miner = wallets["Charlie"]
    net.register(1, miner.hot, miner.cold)
    data = b"model:tiny@sha256:ab12"
    call = bt.calls.Commitments.set_commitment(
        netuid=1, info={"fields": [{f"Raw{len(data)}": "0x" + data.hex()}]}
    )
    res = await client.submit_call(call, miner, signer="hotkey")
    assert res.success, res.message
    got = await client.read("commitment", netuid=1, hotkey_ss58=miner.hot)
    assert got.data == data.decode()
    mg = await client.subnets.metagraph(1)
    assert mg.by_hotkey(miner.hot).commitment.data == data.decode()
    stranger = await client.submit_call(call, wallets["Dave"], signer="hotkey")
    assert stranger.error.name == "AccountNotAllowedCommit"


async def test_weights_rules_and_epoch(net, client, wallets):
    vali, miner = wallets["Bob"], wallets["Charlie"]
    net.register(1, vali.hot, vali.cold)
    net.register(1, miner.hot, miner.cold)
    net.set_stake(1, vali.hot, 1000 * TAO)
    net.advance(2)
    res = await client.execute(bt.SetWeights(netuid=1, weights={2: 1.0}), vali)
    assert res.success, res.message
    assert (await client.read("weights", netuid=1))[1] == {2: 1.0}
    with pytest.raises(bt.ChainError) as info:
        await client.execute(bt.SetWeights(netuid=1, weights={2: 1.0}), vali)
    assert info.value.code == bt.ErrorCode.RATE_LIMITED
    no_permit = await client.execute(bt.SetWeights(netuid=1, weights={1: 1.0}), miner)
    assert no_permit.error.name == "NeuronNoValidatorPermit"
    net.advance(10)  # past the epoch at block 10
    mg = await client.subnets.metagraph(1)
    m, v = mg.by_hotkey(miner.hot), mg.by_hotkey(vali.hot)
    assert m.incentive == pytest.approx(1.0) and v.dividends == pytest.approx(1.0)
    assert m.emission.rao > 0 and v.emission.rao > 0
    assert mg.last_step == 10


async def test_wrong_signer_is_rejected(net, client, wallets):
    vali, miner = wallets["Bob"], wallets["Charlie"]
    net.register(1, vali.hot, vali.cold)
    call = bt.calls.SubtensorModule.set_mechanism_weights(
        netuid=1, mecid=0, dests=[0], weights=[65535], version_key=0
    )
    forged = await client.submit_call(call, WrongSigner(vali.hotkey, miner.hotkey))
    assert not forged.success and "bad signature" in forged.message
    assert net.weights(1)[1] == []


async def test_version_key_and_min_weights(net, client, wallets):
    vali = wallets["Bob"]
    net.register(1, vali.hot, vali.cold)
    net.set_stake(1, vali.hot, TAO)
    owner = wallets["Alice"]
    res = await client.execute(
        bt.SetHyperparameter(netuid=1, name="weights_version", value=5), owner
    )
    assert res.success, res.message
    net.advance(2)
    old = await client.execute(bt.SetWeights(netuid=1, weights={0: 1.0}, version_key=4), vali)
    assert old.error.name == "IncorrectWeightVersionKey"
    call = bt.calls.SubtensorModule.set_mechanism_weights(
        netuid=1, mecid=0, dests=[0], weights=[1], version_key=5
    )
    await client.execute(bt.SetHyperparameter(netuid=1, name="min_allowed_weights", value=2), owner)
    short = await client.submit_call(call, vali, signer="hotkey")
    assert short.error.name == "WeightVecLengthIsLow"


async def test_owner_and_root_hyperparameters(net, client, wallets):
    owner, bob = wallets["Alice"], wallets["Bob"]
    ok = await client.execute(
        bt.SetHyperparameter(netuid=1, name="bonds_penalty", value=100), owner
    )
    assert ok.success and net.hyperparameters(1)["bonds_penalty"] == 100
    denied = await client.execute(
        bt.SetHyperparameter(netuid=1, name="bonds_penalty", value=1), bob
    )
    assert not denied.success and denied.error.name == "BadOrigin"
    kappa = bt.calls.AdminUtils.sudo_set_kappa(netuid=1, kappa=1000)
    direct = await client.submit_call(kappa, owner)
    assert direct.error.name == "BadOrigin"  # root-only, even for the owner
    sudo = bt.calls.Sudo.sudo(call=await net.substrate().compose(kappa))
    assert (await client.submit_call(sudo, owner)).success  # //Alice is the sudo key
    assert net.hyperparameters(1)["kappa"] == 1000
    assert (await client.submit_call(sudo, bob)).error.name == "RequireSudo"
    hp = await client.read("subnet_hyperparameters", netuid=1)
    assert hp["kappa"] == 1000 and hp["bonds_penalty"] == 100


async def test_timelocked_commit_is_recorded(net, client, wallets):
    owner, vali = wallets["Alice"], wallets["Bob"]
    net.register(1, vali.hot, vali.cold)
    net.set_stake(1, vali.hot, TAO)
    on = bt.SetHyperparameter(netuid=1, name="commit_reveal_weights_enabled", value=True)
    assert (await client.execute(on, owner)).success
    net.advance(2)
    res = await client.execute(bt.SetWeights(netuid=1, weights={0: 1.0}), vali)
    assert res.success, res.message
    commits = await net.substrate().query_map("SubtensorModule", "TimelockedWeightCommits", [1])
    ((_epoch, entries),) = commits
    assert entries[0][0] == vali.hot and entries[0][3] == res.data["reveal_round"]


async def test_strict_unknown_items_name_themselves(net, client):
    with pytest.raises(bt.ChainError) as info:
        await client.read("tx_rate_limit")
    assert info.value.name == "SubtensorModule.TxRateLimit"
    with pytest.raises(DevnetChainError, match="does not model call"):
        await client.submit_call(bt.calls.SubtensorModule.start_call(netuid=1), DevWallet.of("Bob"))


def test_status_for_the_cli(net, wallets):
    net.register(1, wallets["Bob"].hot, wallets["Bob"].cold)
    net.set_stake(1, wallets["Bob"].hot, 5 * TAO)
    status = net.status()
    (sn,) = status.subnets
    assert status.head == 0 and sn.tempo == 10
    assert [(n.uid, n.hotkey, n.stake, n.permit) for n in sn.neurons] == [
        (0, wallets["Alice"].hot, 0, False),
        (1, wallets["Bob"].hot, 5 * TAO, True),
    ]
