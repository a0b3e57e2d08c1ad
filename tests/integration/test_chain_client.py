"""``ChainClient`` through the real bittensor SDK against the devnet (manual clock).

Wallets are real files made by ``subnet.wallets``; every chain call goes SDK -> devnet
``Substrate``; every failure must come out as ``subnet.errors.ChainError`` with its name.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3

import pytest

from subnet.chain.devnet import Devnet
from subnet.chain.network import open_chain
from subnet.chain.types import Axon, Commitment
from subnet.errors import ChainConnectionError, ChainError
from subnet.wallets import coldkey_address, create_wallet, hotkey_address

TAO = 10**9
TEMPO = 10


@pytest.fixture
def wallets(tmp_path):
    root = tmp_path / "wallets"
    return {
        name: create_wallet(name, "default", root) for name in ("owner", "vali", "miner", "other")
    }


def _make_net(tmp_path, wallets, *, shield=True, name="chain.sqlite", **hp) -> Devnet:
    owner = wallets["owner"]
    net = Devnet.create(
        tmp_path / name,
        block_time=0.02,
        clock="manual",
        sudo_ss58=coldkey_address(owner),
        enable_mev_shield=shield,
    )
    net.add_subnet(
        coldkey_address(owner), hotkey_address(owner), tempo=TEMPO, weights_rate_limit=2, **hp
    )
    return net


@pytest.fixture
def net(tmp_path, monkeypatch, wallets):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    net = _make_net(tmp_path, wallets)
    yield net
    net.close()


@pytest.fixture
async def chain(net, tmp_path):
    async with open_chain(f"devnet:{tmp_path / 'chain.sqlite'}") as chain:
        yield chain


def _calls(net) -> list[str]:
    """Module.function of every extrinsic the devnet included, in order."""
    with net.store.read() as db:
        rows = db.execute("SELECT module, function FROM extrinsics ORDER BY block, idx")
        return [f"{r[0]}.{r[1]}" for r in rows]


async def _validator_and_miner(chain, net, wallets) -> tuple[int, int]:
    vuid = await chain.register(1, wallets["vali"])
    muid = await chain.register(1, wallets["miner"])
    net.set_stake(1, hotkey_address(wallets["vali"]), 1000 * TAO)
    net.advance(2)
    return vuid, muid


async def test_register_is_shielded_idempotent_and_assigns_uids(chain, net, wallets):
    assert await chain.is_registered(1, hotkey_address(wallets["vali"])) is None
    assert await chain.register(1, wallets["vali"]) == 1
    assert await chain.register(1, wallets["miner"]) == 2
    head = await chain.block()
    assert await chain.register(1, wallets["vali"]) == 1  # no second transaction
    assert await chain.is_registered(1, hotkey_address(wallets["vali"])) == 1
    mg = await chain.metagraph(1, max_age_blocks=0)
    assert mg.hotkeys == [
        hotkey_address(w) for w in (wallets["owner"], wallets["vali"], wallets["miner"])
    ]
    assert mg.by_uid(2).coldkey == coldkey_address(wallets["miner"])
    assert await chain.block() == head
    assert _calls(net) == ["MevShield.submit_encrypted", "SubtensorModule.burned_register"] * 2


async def test_register_without_a_shield_uses_the_raw_call(tmp_path, monkeypatch, wallets):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    net = _make_net(tmp_path, wallets, shield=False, name="plain.sqlite")
    async with open_chain(f"devnet:{tmp_path / 'plain.sqlite'}") as chain:
        assert await chain.register(1, wallets["miner"]) == 1
    assert _calls(net) == ["SubtensorModule.burned_register"]
    net.close()


async def test_registration_refused_by_the_chain_is_a_named_error(chain, wallets):
    await chain.set_hyperparameter(1, wallets["owner"], "registration_allowed", False)
    with pytest.raises(ChainError) as info:
        await chain.register(1, wallets["miner"])
    assert info.value.name == "SubNetRegistrationDisabled"


async def test_serve_rejects_loopback_and_publishes_the_axon(chain, net, wallets):
    await chain.register(1, wallets["miner"])
    with pytest.raises(ChainError) as info:
        await chain.serve(1, wallets["miner"], "127.0.0.1", 8091)
    assert info.value.name == "InvalidIpAddress"
    await chain.serve(1, wallets["miner"], "127.0.0.2", 8091)
    neuron = (await chain.metagraph(1)).by_hotkey(hotkey_address(wallets["miner"]))
    assert neuron.axon == Axon("127.0.0.2", 8091)
    assert neuron.axon.url == "http://127.0.0.2:8091"
    with pytest.raises(ChainError) as info:
        await chain.serve(1, wallets["other"], "10.0.0.1", 8091)
    assert info.value.name == "HotKeyNotRegisteredInNetwork"


async def test_commit_and_read_identity(chain, net, wallets):
    await chain.register(1, wallets["miner"])
    long_payload = "model:" + "é" * 100  # 206 bytes: two Raw fields, split mid-character
    net.advance(1)
    await chain.commit_identity(1, wallets["miner"], long_payload)
    got = await chain.identities(1)
    assert got == {hotkey_address(wallets["miner"]): Commitment(long_payload, 1)}
    with pytest.raises(ChainError) as info:
        await chain.commit_identity(1, wallets["other"], "model:x")
    assert info.value.name == "AccountNotAllowedCommit"
    with pytest.raises(ChainError) as info:
        await chain.commit_identity(1, wallets["miner"], "x" * 385)
    assert info.value.name == "INVALID_ARGUMENT"


async def test_set_weights_plaintext_reads_back_and_rate_limits(chain, net, wallets):
    vuid, muid = await _validator_and_miner(chain, net, wallets)
    result = await chain.set_weights(1, wallets["vali"], {muid: 0.75, vuid: 0.25})
    assert result.success and result.path == "plaintext" and result.matches is True
    assert result.sent == {vuid: 21845, muid: 65535}
    assert result.read_back == pytest.approx({vuid: 0.25, muid: 0.75}, abs=1e-4)
    assert result.block == await chain.block()
    assert net.weights(1)[vuid] == [(vuid, 21845), (muid, 65535)]
    with pytest.raises(ChainError) as info:  # preflight channel
        await chain.set_weights(1, wallets["vali"], {muid: 1.0})
    assert info.value.name == "RATE_LIMITED"
    net.advance(2)
    assert (await chain.set_weights(1, wallets["vali"], {muid: 1.0})).sent == {muid: 65535}


async def test_set_weights_chain_side_failures_are_named(chain, net, wallets):
    vuid, muid = await _validator_and_miner(chain, net, wallets)
    with pytest.raises(ChainError) as info:
        await chain.set_weights(1, wallets["miner"], {vuid: 1.0})
    assert info.value.name == "NeuronNoValidatorPermit"
    with pytest.raises(ChainError) as info:
        await chain.set_weights(1, wallets["other"], {muid: 1.0})
    assert info.value.name == "NOT_REGISTERED"
    with pytest.raises(ChainError) as info:
        await chain.set_weights(1, wallets["vali"], {muid: 0.0})
    assert info.value.name == "INVALID_ARGUMENT"
    await chain.set_hyperparameter(1, wallets["owner"], "weights_version", 3)
    with pytest.raises(ChainError) as info:
        await chain.set_weights(1, wallets["vali"], {muid: 1.0}, version_key=2)
    assert info.value.name == "IncorrectWeightVersionKey"


async def test_a_hotkey_file_signing_for_another_key_is_rejected(chain, net, wallets, tmp_path):
    vuid, muid = await _validator_and_miner(chain, net, wallets)
    hotkeys = tmp_path / "wallets"
    # vali's public file still says vali, but its private file now holds miner's key
    shutil.copy(hotkeys / "miner" / "hotkeys" / "default", hotkeys / "vali" / "hotkeys" / "default")
    from subnet.wallets import load_wallet

    forged = load_wallet("vali", "default", hotkeys)
    with pytest.raises(ChainError, match="bad signature") as info:
        await chain.set_weights(1, forged, {muid: 1.0})
    assert info.value.name == "InvalidTransaction"
    assert net.weights(1)[vuid] == []


async def _produce_blocks_until_done(net, waiter: asyncio.Task, *, max_blocks: int) -> None:
    """Advance the manual clock one block at a time until ``waiter`` finishes.

    The waiter gets a turn of the loop (up to 50 ms) before each block, and it reads the chain
    at every block number it is shown, so what it returns does not depend on how fast it is
    scheduled: a slow turn only means a block or two more before it reports the same answer.
    """
    for _ in range(max_blocks):
        done, _ = await asyncio.wait({waiter}, timeout=0.05)
        if done:
            return
        net.advance(1)
    waiter.cancel()
    raise AssertionError(f"still waiting after {max_blocks} blocks (head {net.head()})")


async def test_epoch_shows_incentive_dividends_emission(chain, net, wallets):
    vuid, muid = await _validator_and_miner(chain, net, wallets)
    await chain.set_weights(1, wallets["vali"], {muid: 1.0})
    assert await chain.block() < TEMPO  # the first epoch is still ahead
    waiter = asyncio.create_task(chain.wait_for_epoch(1, timeout=60))
    await _produce_blocks_until_done(net, waiter, max_blocks=2 * TEMPO)
    assert await waiter == TEMPO
    mg = await chain.metagraph(1)
    miner, vali = mg.by_uid(muid), mg.by_uid(vuid)
    assert miner.incentive == pytest.approx(1.0) and vali.dividends == pytest.approx(1.0)
    assert miner.emission > 0 and vali.emission > 0 and miner.emission_rao > 0
    assert vali.validator_permit and not miner.validator_permit
    assert vali.stake > 1000 and vali.last_update > 0


async def test_block_waits_and_block_time(chain, net):
    assert await chain.block_time() == pytest.approx(0.02)
    head = await chain.block()
    waiter = asyncio.create_task(chain.wait_for_block(head + 1, timeout=60))
    done, _ = await asyncio.wait({waiter}, timeout=0.05)
    assert not done  # the manual clock has not moved: it must still be waiting
    net.advance(1)
    assert await waiter == head + 1
    assert await chain.wait_for_block(head) == head + 1  # a block already reached: no wait


async def test_metagraph_is_cached_within_the_block_window(chain, net, wallets):
    first = await chain.metagraph(1)
    assert await chain.metagraph(1) is first
    net.advance(1)
    fresh = await chain.metagraph(1)
    assert fresh is not first and fresh.block == first.block + 1
    assert await chain.metagraph(1, max_age_blocks=5) is fresh
    with pytest.raises(ChainError) as info:
        await chain.metagraph(99)
    assert info.value.name == "SUBNET_NOT_EXISTS"


async def test_hyperparameters_owner_root_and_strangers(chain, net, wallets):
    hp = await chain.hyperparameters(1)
    assert hp["tempo"] == TEMPO and hp["commit_reveal_weights_enabled"] is False
    assert await chain.tempo(1) == TEMPO and await chain.weights_rate_limit(1) == 2
    await chain.set_hyperparameter(1, wallets["owner"], "bonds_penalty", 100)
    await chain.set_hyperparameter(1, wallets["owner"], "weights_rate_limit", 7)  # root, via Sudo
    hp = await chain.hyperparameters(1)
    assert hp["bonds_penalty"] == 100 and hp["weights_rate_limit"] == 7
    with pytest.raises(ChainError) as info:
        await chain.set_hyperparameter(1, wallets["other"], "bonds_penalty", 1)
    assert info.value.name == "BadOrigin"
    with pytest.raises(ChainError) as info:
        await chain.set_hyperparameter(1, wallets["other"], "weights_rate_limit", 1)
    assert info.value.name == "RequireSudo"
    with pytest.raises(ChainError) as info:
        await chain.set_hyperparameter(1, wallets["owner"], "no_such_thing", 1)
    assert info.value.name == "INVALID_ARGUMENT"
    assert (await chain.hyperparameters(1))["bonds_penalty"] == 100


async def test_commit_reveal_weights_are_committed_not_read_back(chain, net, wallets):
    vuid, muid = await _validator_and_miner(chain, net, wallets)
    await chain.set_hyperparameter(1, wallets["owner"], "commit_reveal_weights_enabled", True)
    result = await chain.set_weights(1, wallets["vali"], {muid: 1.0})
    assert result.path == "commit_reveal" and result.matches is None
    assert isinstance(result.reveal_round, int) and result.reveal_round > 0
    assert net.weights(1)[vuid] == []


async def test_block_hash_is_stable_for_past_blocks_and_none_for_future(chain, net):
    net.advance(3)
    head = await chain.block()
    first = await chain.block_hash(head - 1)
    assert first and first.startswith("0x")
    assert await chain.block_hash(head - 1) == first  # validators agree on a block's seed
    assert await chain.block_hash(head - 2) != first
    assert await chain.block_hash(head + 100) is None


async def test_a_devnet_that_cannot_read_its_state_is_a_connection_error(net, monkeypatch):
    import bittensor as bt

    from subnet.chain.client import ChainClient

    client = bt.Client("local", substrate=net.substrate())
    await client.connect()
    chain = ChainClient(client, network="devnet")
    head = await chain.block()

    def locked() -> int:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(net, "touch", locked)
    with pytest.raises(ChainConnectionError) as info:
        await chain.block()
    assert info.value.name == "DevnetState" and info.value.transient
    monkeypatch.undo()
    assert await chain.block() == head  # the same client works again once the file does
    await client.close()
