"""``kill -9`` the validator process mid-step, restart it: no lost or duplicated records.

The validator runs as a real ``subnet validator`` process against a wall-clock devnet and real
miners on loopback. It is killed while a miner request is in flight (so inside a step's query
phase, after at least one committed step), then restarted; the store must hold contiguous
steps, each complete, each block once, and the EMA must belong to the last committed step.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.integration._validator_kit import NETUID, make_subnet, running_miners

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
TASKS = 2


def _cmd(sub, tmp: Path, max_steps: int | None) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "subnet.cli",
        "validator",
        "--teacher",
        str(sub.zoo["teacher"]),
        "--engine",
        "hf",
        "--network",
        sub.network,
        "--netuid",
        str(NETUID),
        "--wallet-name",
        "vali",
        "--wallet-path",
        str(tmp / "wallets"),
        "--state-dir",
        str(tmp / "vs"),
        "--tasks-per-step",
        str(TASKS),
        "--model-roots",
        str(tmp / "models"),
        "--query-timeout",
        "20",
        "--set",
        "validator.max_tokens=6",
        "--set",
        "validator.shutdown_grace=0",
    ]
    return cmd + (["--max-steps", str(max_steps)] if max_steps else [])


def _steps(db_path: Path) -> int:
    if not db_path.exists():
        return 0
    with sqlite3.connect(db_path) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM steps").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


async def test_kill_9_mid_step_then_restart_loses_and_duplicates_nothing(tmp_path, tiny):
    sub = make_subnet(tiny, tmp_path, clock="wall", block_time=0.3, tempo=50)
    db_path = tmp_path / "vs" / "validator.sqlite"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    names = ("teacher", "student", "slow")
    async with running_miners(sub, tmp_path, slow_delay=1.5, names=names):
        proc = await asyncio.create_subprocess_exec(*_cmd(sub, tmp_path, None), env=env)
        killed_mid_step = False
        for _ in range(1200):  # generous: the process imports torch and loads the teacher
            await asyncio.sleep(0.1)
            assert proc.returncode is None, "validator exited early"
            if _steps(db_path) >= 1 and sub.gates["slow"].limiter.active > 0:
                proc.send_signal(signal.SIGKILL)
                killed_mid_step = True
                break
        await proc.wait()
        assert killed_mid_step and proc.returncode == -signal.SIGKILL
        before = _steps(db_path)
        proc = await asyncio.create_subprocess_exec(*_cmd(sub, tmp_path, 2), env=env)
        assert await asyncio.wait_for(proc.wait(), 300) == 0
    with sqlite3.connect(db_path) as db:
        steps = db.execute(
            "SELECT step, block, n_miners, n_answers FROM steps ORDER BY step"
        ).fetchall()
        assert [s[0] for s in steps] == list(range(1, before + 3))  # contiguous, none lost
        blocks = [s[1] for s in steps]
        assert blocks == sorted(set(blocks))  # each block once, increasing
        for step, _, n_miners, n_answers in steps:
            assert n_miners == len(names) and n_answers == n_miners * TASKS
            got = db.execute(
                "SELECT COUNT(*), COUNT(DISTINCT uid || '/' || task_id) FROM "
                "answers WHERE step = ?",
                (step,),
            ).fetchone()
            assert got == (n_answers, n_answers)
        assert (
            db.execute("SELECT COUNT(*) FROM answers WHERE step > ?", (steps[-1][0],)).fetchone()[0]
            == 0
        )
        assert {r[0] for r in db.execute("SELECT DISTINCT step FROM ema")} == {steps[-1][0]}
