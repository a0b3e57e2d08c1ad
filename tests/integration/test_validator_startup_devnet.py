"""``subnet validator`` start-up as a user meets it: real processes, a real devnet, real wallets.

An unregistered hotkey stops at once (exit 2, one line, the command that registers it) before
anything is loaded or queried; a second validator on a state directory in use stops with the
holder's pid; a registered one states its uid, stake and permit.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neurons.validator.startup import check_standing
from subnet.chain.cli import init_devnet
from subnet.chain.network import open_chain
from subnet.wallets import create_wallet, load_wallet

REPO = Path(__file__).resolve().parents[2]
HOLDER = """
import sys, time
from subnet.state_lock import StateLock
StateLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
async def devnet(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    folder = tmp_path / "net"
    args = argparse.Namespace(
        validators=2,
        miners=1,
        tempo=10,
        block_time=0.05,
        clock="manual",
        weights_rate_limit=1,
        stake=1000.0,
        mev_shield=False,
    )
    assert await init_devnet(args, folder) == 0
    create_wallet("stranger", "default", folder / "wallets")  # never registered
    return folder


def _validator(folder: Path, wallet: str, state: Path) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable,
        "-m",
        "subnet.cli",
        "validator",
        "--teacher",
        str(folder / "no-teacher-needed-before-the-checks"),
        "--network",
        f"devnet:{folder}",
        "--netuid",
        "1",
        "--wallet.name",
        wallet,
        "--wallet.hotkey",
        "default",
        "--wallet.path",
        str(folder / "wallets"),
        "--state-dir",
        str(state),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)


def test_an_unregistered_validator_exits_non_zero_with_the_command_that_registers(devnet, tmp_path):
    run = _validator(devnet, "stranger", tmp_path / "state")
    assert run.returncode == 2, run.stderr
    [line] = run.stderr.strip().splitlines()
    assert line.startswith("subnet validator: error: hotkey ")
    assert "is not registered on netuid 1" in line
    assert f"subnet validator --register --network devnet:{devnet} --netuid 1" in line
    assert "--wallet.name stranger --wallet.hotkey default" in line
    assert "btcli subnets register --netuid 1" in line
    assert not (tmp_path / "state" / "validator.sqlite").exists()  # stopped before any state


def test_a_second_validator_on_a_state_directory_in_use_names_the_holder(devnet, tmp_path):
    state = tmp_path / "state"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        run = _validator(devnet, "validator1", state)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert run.returncode == 2, run.stderr
    [line] = run.stderr.strip().splitlines()
    assert line == (
        f"subnet validator: error: state directory {state} is in use by another validator "
        f"(pid {holder.pid}); stop it first or use another state directory"
    )


async def test_a_registered_validator_states_uid_stake_and_permit(devnet, caplog):
    wallets = devnet / "wallets"
    staked = load_wallet("validator1", "default", str(wallets))
    stranger = load_wallet("stranger", "default", str(wallets))
    async with open_chain(f"devnet:{devnet}") as chain:
        with caplog.at_level(logging.INFO, logger="subnet.validator"):
            standing = await check_standing(
                chain,
                1,
                staked,
                staked.hotkeypub.ss58_address,
                wallet_name="validator1",
                wallet_hotkey="default",
            )
            assert standing.uid == 1 and standing.permit and standing.stake >= 1000.0  # + 1 epoch
            # --register: the real SDK registration path; no stake, so no permit yet.
            late = await check_standing(
                chain,
                1,
                stranger,
                stranger.hotkeypub.ss58_address,
                wallet_name="stranger",
                wallet_hotkey="default",
                register=True,
            )
    assert late.uid == 4 and not late.permit
    said = [r.getMessage() for r in caplog.records]
    assert any("validator uid 1 on netuid 1" in s and "validator permit yes" in s for s in said)
    assert "registered as uid 4 on netuid 1" in said
    assert any(s.startswith("no validator permit: scoring continues") for s in said)
