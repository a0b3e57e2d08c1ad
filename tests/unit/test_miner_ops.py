"""The miner's operational guards: the per-hotkey lock, the bind-address warning, and the
endpoint keeper's decisions (the chain side runs in tests/e2e/test_miner_devnet.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neurons.miner.endpoint import bind_mismatch
from subnet.errors import ConfigError
from subnet.pidlock import PidLock

HOLD = """
import sys, time
from subnet.pidlock import PidLock
lock = PidLock(sys.argv[1], "a test").acquire()  # kept: closing the file drops the lock
print("held", flush=True)
time.sleep(600)
"""


def _holder(path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_holder_is_named_and_a_killed_one_never_blocks(tmp_path: Path) -> None:
    lock = tmp_path / "state" / "miner-5X.lock"
    proc = _holder(lock)
    try:
        with pytest.raises(ConfigError, match=rf"another process \(pid {proc.pid}\)"):
            PidLock(lock, "a miner for hotkey 5X").acquire()
    finally:
        proc.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel drops the lock
        proc.wait()
    deadline = time.monotonic() + 30
    while True:
        try:
            held = PidLock(lock, "a miner").acquire()
            break
        except ConfigError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert lock.read_text().strip() == str(os.getpid())
    held.release()


@pytest.mark.parametrize(
    ("host", "announced", "warned"),
    [
        ("0.0.0.0", "127.0.0.2", False),
        ("::", "203.0.113.7", False),
        ("127.0.0.2", "127.0.0.2", False),
        ("127.0.0.1", "127.0.0.2", True),  # the newcomer's devnet trap
        ("10.0.0.5", "203.0.113.7", True),  # fine behind a port forward, but said
    ],
)
def test_bind_address_that_is_not_the_announced_one_is_warned(
    host: str, announced: str, warned: bool
) -> None:
    text = bind_mismatch(host, announced, 8091)
    assert (text is not None) == warned
    if host == "127.0.0.1":
        assert text is not None and "127.0.0.1 and 127.0.0.2 are different" in text
