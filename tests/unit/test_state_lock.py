"""One process per state directory: the lock names its holder and dies with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from subnet.errors import StateError
from subnet.state_lock import LOCK_NAME, StateLock

REPO = Path(__file__).resolve().parents[2]
HOLDER = """
import sys, time
from subnet.state_lock import StateLock
lock = StateLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


def _holder(folder: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_gets_one_line_naming_the_holder_pid(tmp_path):
    holder = _holder(tmp_path / "state")
    try:
        with pytest.raises(StateError) as caught:
            StateLock(tmp_path / "state", what="validator").acquire()
        message = str(caught.value)
        assert f"in use by another validator (pid {holder.pid})" in message
        assert "\n" not in message and str(tmp_path / "state") in message
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = _holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    with StateLock(tmp_path) as lock:  # the file stays, the lock went with the process
        assert lock.held
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_the_lock_is_exclusive_within_one_process_and_released_on_exit(tmp_path):
    with StateLock(tmp_path) as first:
        assert first.acquire() is first  # idempotent for its holder
        with pytest.raises(StateError, match=f"pid {os.getpid()}"):
            StateLock(tmp_path).acquire()  # another open of the file: refused
    assert not first.held
    StateLock(tmp_path).acquire().release()


def test_a_holder_that_has_not_written_its_pid_yet_is_still_named(tmp_path):
    (tmp_path / LOCK_NAME).write_text("")
    with StateLock(tmp_path):
        (tmp_path / LOCK_NAME).write_text("")  # as if caught between lock and write
        with pytest.raises(StateError, match="in use by another process \\(pid not written"):
            StateLock(tmp_path).acquire()


def test_an_unusable_state_directory_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StateError, match="cannot create the lock file") as caught:
        StateLock(blocker / "state").acquire()
    assert "\n" not in str(caught.value)
