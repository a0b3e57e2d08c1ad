"""``subnet validator`` as an operator runs it: default flags, what it prints, what it refuses.

With default logging the process prints one start line (hotkey, uid, stake, permit, teacher,
engine, prompts), one line per step and one per weight set, to stderr and to a rotating file
in its state dir; it finds the devnet's wallets without ``--wallet.path``; its metrics listen
on loopback; ``subnet validator status`` reads what it left. Failures an operator can cause
(a busy metrics port, a corrupt teacher) are one line without a traceback, and a failed run
leaves no folder in the working directory.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.integration._validator_kit import NETUID, make_subnet, running_miners

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cmd(sub, teacher: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "subnet.cli",
        "validator",
        "--teacher",
        str(teacher),
        "--engine",
        "hf",
        "--network",
        sub.network,
        "--netuid",
        str(NETUID),
        "--wallet.name",
        "vali",  # no --wallet.path: the devnet's own wallets/ folder
        *extra,
    ]


def refused(argv: list[str], cwd: Path) -> str:
    out = subprocess.run(argv, cwd=cwd, env=env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return out.stderr.strip().splitlines()[-1]


async def test_default_run_prints_start_step_and_weight_lines(tmp_path: Path, tiny) -> None:
    sub = make_subnet(tiny, tmp_path, clock="wall", block_time=0.3, tempo=50)
    teacher = sub.zoo["teacher"]
    state = tmp_path / "vs"
    mport = free_port()
    argv = cmd(
        sub,
        teacher,
        "--state-dir",
        str(state),
        "--model-roots",
        str(tmp_path / "models"),
        "--tasks-per-step",
        "2",
        "--max-steps",
        "3",
        "--metrics-port",
        str(mport),
        "--set",
        "validator.max_tokens=6",
        "--set",
        "validator.weights_interval=1",
    )
    async with running_miners(sub, tmp_path, names=("teacher", "garbage")):
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env(), cwd=tmp_path, stderr=asyncio.subprocess.PIPE
        )
        scraped = ""
        async with aiohttp.ClientSession() as s:
            for _ in range(1200):  # imports torch and loads the teacher first
                if proc.returncode is not None:
                    break
                try:
                    async with s.get(f"http://127.0.0.1:{mport}/metrics") as r:
                        scraped = await r.text()
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
        _, err_bytes = await asyncio.wait_for(proc.communicate(), 600)
    err = err_bytes.decode()
    assert proc.returncode == 0, err[-4000:]
    assert "validator_block" in scraped  # metrics on loopback (the default metrics host)
    assert "Traceback" not in err and "np.int64" not in err and "np.float" not in err
    start = [ln for ln in err.splitlines() if " netuid 1: uid " in ln]
    assert len(start) == 1, err[-4000:]
    assert re.search(r"uid \d+, stake [\d,]+\.\d\d, permit (yes|no);", start[0]), start[0]
    assert f"teacher {teacher}" in start[0]
    assert "hf engine" in start[0] and "2 prompts per step" in start[0]
    steps = [ln for ln in err.splitlines() if " step " in ln and " answers from " in ln]
    assert len(steps) == 3, err[-4000:]
    assert "failed: format_" in steps[-1] and "top EMA: uid " in steps[-1]
    assert any("weights set at block" in ln and "read back equal" in ln for ln in err.splitlines())
    logged = (state / "validator.log").read_text()
    assert start[0].split(": ", 1)[1] in logged and "weights set at block" in logged

    # `subnet validator status` reads the state dir (read-only)
    status = subprocess.run(
        [sys.executable, "-m", "subnet.cli", "validator", "status", "--state-dir", str(state)],
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr
    assert "last 3 steps:" in status.stdout and "last weight set: block" in status.stdout
    garbage = sub.uids["garbage"]
    assert any(
        ln.split()[:1] == [str(garbage)] and "format_" in ln
        for ln in (x.strip() for x in status.stdout.splitlines())
    ), status.stdout


async def test_operator_mistakes_are_one_line_and_leave_no_folder(tmp_path: Path, tiny) -> None:
    sub = make_subnet(tiny, tmp_path)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    # a corrupt teacher checkpoint
    bad = tmp_path / "bad-teacher"
    shutil.copytree(sub.zoo["teacher"], bad)
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4000])
    line = refused(cmd(sub, bad), cwd)
    assert "model.safetensors is not a readable safetensors file" in line
    # the metrics port is taken
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = refused(cmd(sub, sub.zoo["teacher"], "--metrics-port", str(port)), cwd)
    assert f"cannot listen on 127.0.0.1:{port}" in line and "address already in use" in line
    assert "validator.metrics_host/metrics_port" in line
    assert list(cwd.iterdir()) == []  # no .validator (or anything) left in the working directory
