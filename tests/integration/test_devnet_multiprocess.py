"""Two OS processes on one devnet file with the wall clock: no block producer, no server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _devnet_kit import DevWallet

from subnet.chain.devnet import Devnet

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


@pytest.mark.slow
def test_validator_and_miner_processes_share_a_wall_clock_devnet(tmp_path):
    path = tmp_path / "chain.db"
    owner = DevWallet.of("Alice")
    net = Devnet.create(path, block_time=0.05, clock="wall")
    net.add_subnet(owner.cold, owner.hot, tempo=20, weights_rate_limit=0)
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
    }
    procs = {
        role: subprocess.Popen(
            [sys.executable, str(HERE / "_devnet_worker.py"), role, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for role in ("validator", "miner")
    }
    outs = {}
    for role, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=150)
        assert proc.returncode == 0, f"{role} failed:\n{stderr[-3000:]}"
        outs[role] = json.loads(stdout.strip().splitlines()[-1])
    assert outs["miner"]["incentive"] == pytest.approx(1.0)
    assert outs["miner"]["emission"] > 0 and outs["miner"]["axon"] == "127.0.0.2:8091"
    status = Devnet.open(path).status()
    assert status.head > 20 and status.subnets[0].epoch_index >= 1
