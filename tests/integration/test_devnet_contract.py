"""Which chain surface each SDK path touches: a golden list, so an SDK upgrade fails loudly.

If this fails after a bittensor upgrade, the SDK now reads or calls something new: model it in
``subnet/chain/devnet`` (with its real decoded shape) and update the list here.
"""

from __future__ import annotations

from typing import cast

import bittensor as bt
import pytest
from _devnet_kit import DevWallet

from subnet.chain.devnet import Devnet
from subnet.chain.devnet.substrate import DevnetSubstrate

GOLDEN: dict[str, set[tuple[str, str]]] = {
    "connect": {("connect", ""), ("query_map", "SubtensorModule.TokenSymbol")},
    "register_shielded": {
        ("compose", "SubtensorModule.burned_register"),
        ("query", "SubtensorModule.Burn"),
        ("query", "SubtensorModule.CollateralLockShare"),
        ("mev_next_key", ""),
        ("account_next_index", ""),
        ("sign_extrinsic", ""),
        ("compose", "MevShield.submit_encrypted"),
        ("submit", ""),
        ("block_hash", ""),
        ("find_extrinsic", ""),
    },
    "register_raw": {("compose", "SubtensorModule.burned_register"), ("submit", "")},
    "serve": {("compose", "SubtensorModule.serve_axon"), ("estimate_fee", ""), ("submit", "")},
    "metagraph": {
        ("block_number", ""),
        ("block_hash", ""),
        ("runtime_call", "SubnetInfoRuntimeApi.get_metagraph"),
        ("query_map", "Commitments.CommitmentOf"),
        ("query_map", "Commitments.RevealedCommitments"),
    },
    "set_weights": {
        ("block_number", ""),
        ("block_hash", ""),
        ("query", "SubtensorModule.Uids"),
        ("query", "SubtensorModule.CommitRevealWeightsEnabled"),
        ("query", "SubtensorModule.WeightsSetRateLimit"),
        ("query", "SubtensorModule.LastUpdate"),
        ("query", "SubtensorModule.MinAllowedWeights"),
        ("query", "SubtensorModule.MaxWeightsLimit"),
        ("query", "SubtensorModule.SubnetEpochConsensus"),
        ("compose", "SubtensorModule.set_mechanism_weights"),
        ("estimate_fee", ""),
        ("submit", ""),
    },
    "set_hyperparameter": {
        ("compose", "AdminUtils.sudo_set_tempo"),
        ("estimate_fee", ""),
        ("submit", ""),
    },
    "hyperparameters": {("runtime_call", "SubnetInfoRuntimeApi.get_subnet_hyperparams_v3")},
}


async def test_sdk_paths_touch_exactly_the_golden_surface(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # A fresh token-symbol cache, so connect() really reads TokenSymbol from the chain.
    monkeypatch.setenv("BTCLI_TOKEN_SYMBOLS_CACHE", str(tmp_path / "symbols.json"))
    alice, bob, charlie = (DevWallet.of(n) for n in ("Alice", "Bob", "Charlie"))
    net = Devnet.create(tmp_path / "chain.db", block_time=0.01)
    net.add_subnet(alice.cold, alice.hot, tempo=100, weights_rate_limit=0)
    substrate = DevnetSubstrate(net)  # the devnet's own type: it records a trace of calls
    seen: dict[str, set[tuple[str, str]]] = {}

    def cut(name: str) -> None:
        seen[name] = set(substrate.trace) - {("block_time", ""), ("finalized_block_number", "")}
        substrate.trace.clear()

    # The SDK's Protocol says block_hash returns str; the devnet returns None for a block it does
    # not have, as a node does (see Devnet.substrate).
    async with bt.Client("local", substrate=cast("bt.Substrate", substrate)) as client:
        cut("connect")
        await client.execute(bt.BurnedRegister(netuid=1, hotkey_ss58=bob.hot), bob)
        cut("register_shielded")
        raw = bt.calls.SubtensorModule.burned_register(netuid=1, hotkey=charlie.hot)
        await client.submit_call(raw, charlie)
        cut("register_raw")
        await client.execute(bt.ServeAxon(netuid=1, ip="127.0.0.2", port=8091), charlie)
        cut("serve")
        await client.subnets.metagraph(1)
        cut("metagraph")
        net.set_stake(1, bob.hot, 10**9)
        assert (await client.execute(bt.SetWeights(netuid=1, weights={2: 1.0}), bob)).success
        cut("set_weights")
        await client.execute(bt.SetHyperparameter(netuid=1, name="tempo", value=400), alice)
        cut("set_hyperparameter")
        await client.read("subnet_hyperparameters", netuid=1)
        cut("hyperparameters")
    assert seen == GOLDEN


@pytest.mark.parametrize("item", ["TxRateLimit", "SubnetMovingPrice"])
async def test_unmodelled_storage_is_refused_by_name(tmp_path, item):
    net = Devnet.create(tmp_path / "chain.db")
    with pytest.raises(bt.ChainError) as info:
        await net.substrate().query("SubtensorModule", item, [1])
    assert info.value.name == f"SubtensorModule.{item}"
