"""The devnet file under damage: missing, garbage, truncated, killed writers, failed calls."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import bittensor as bt
import pytest
from _devnet_kit import DevWallet

from subnet.chain.devnet import Devnet, DevnetChainError
from subnet.errors import ChainError, StateError

ROOT = Path(__file__).parent.parent.parent
ALICE, BOB, CHARLIE = (DevWallet.of(n) for n in ("Alice", "Bob", "Charlie"))

# Two stakes that one transaction always moves together; a torn write would split them.
_WRITER = """
import sys, time
from subnet.chain.devnet import Devnet
net = Devnet.open(sys.argv[1])
i = 0
while True:
    i += 1
    with net.store.tx() as db:
        db.execute("UPDATE neurons SET stake=? WHERE netuid=1 AND uid=1", (i,))
        time.sleep(0.002)
        db.execute("UPDATE neurons SET stake=? WHERE netuid=1 AND uid=2", (i,))
"""


@pytest.fixture
def net(tmp_path) -> Devnet:
    net = Devnet.create(tmp_path / "chain.db")
    net.add_subnet(ALICE.cold, ALICE.hot, tempo=10)
    net.register(1, BOB.hot, BOB.cold)
    net.register(1, CHARLIE.hot, CHARLIE.cold)
    return net


def test_missing_file(tmp_path):
    with pytest.raises(StateError, match="does not exist"):
        Devnet.open(tmp_path / "nope.db")


def test_existing_file_is_not_overwritten(net, tmp_path):
    with pytest.raises(StateError, match="already exists"):
        Devnet.create(tmp_path / "chain.db")


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.db"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(StateError, match="not a devnet file"):
        Devnet.open(path)


def test_foreign_sqlite_file(tmp_path):
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(StateError, match="not a devnet file"):
        Devnet.open(path)


def test_truncated_file(net, tmp_path):
    net.close()
    path = tmp_path / "chain.db"
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(StateError):
        Devnet.open(path).status()


def test_killed_writer_leaves_no_torn_transaction(net, tmp_path):
    path = tmp_path / "chain.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], env=env)
    try:
        reader = Devnet.open(path)
        deadline = time.monotonic() + 60
        while reader.status().subnets[0].neurons[1].stake < 20:
            assert proc.poll() is None and time.monotonic() < deadline, "writer did not start"
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    reopened = Devnet.open(path)
    stakes = [n.stake for n in reopened.status().subnets[0].neurons]
    assert stakes[1] == stakes[2] >= 20
    reopened.set_stake(1, BOB.hot, 7)  # and the file still takes writes
    assert reopened.status().subnets[0].neurons[1].stake == 7


def test_error_inside_a_transaction_rolls_back(net):
    with pytest.raises(RuntimeError), net.store.tx() as db:
        db.execute("UPDATE neurons SET stake=99 WHERE netuid=1 AND uid=1")
        raise RuntimeError("crash between two writes")
    assert net.status().subnets[0].neurons[1].stake == 0


async def test_refused_nested_call_changes_nothing_but_the_nonce(net, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    async with bt.Client("local", substrate=net.substrate()) as client:
        too_many = bt.calls.AdminUtils.sudo_set_max_allowed_validators(
            netuid=1, max_allowed_validators=10_000
        )
        sudo = bt.calls.Sudo.sudo(call=await net.substrate().compose(too_many))
        res = await client.submit_call(sudo, ALICE)
    assert res.error is not None and res.error.name == "MaxValidatorsLargerThanMaxUIds"
    assert net.hyperparameters(1)["max_validators"] == 64
    assert await net.substrate().account_next_index(ALICE.cold) == 1


def test_seeding_errors_are_chain_errors(net):
    with pytest.raises(ChainError) as info:
        net.register(1, BOB.hot, BOB.cold)
    assert info.value.name == "HotKeyAlreadyRegisteredInSubNet"
    with pytest.raises(DevnetChainError, match="unknown hyperparameters"):
        net.add_subnet(ALICE.cold, ALICE.hot, tempo=10, not_a_param=1)
    with pytest.raises(StateError, match="clock"):
        Devnet.create(Path(net.store.path).with_name("x.db"), clock="sundial")


def test_epochs_run_once_whoever_touches_first(net, tmp_path):
    other = Devnet.open(tmp_path / "chain.db")
    net.advance(25)  # epochs due at 10 and 20
    assert other.status().subnets[0].epoch_index == 2
    assert net.status().subnets[0].epoch_index == 2
    assert other.status().subnets[0].last_epoch_block == 20
