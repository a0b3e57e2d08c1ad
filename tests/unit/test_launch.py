"""The ``--nproc`` launcher names the rank that caused a failure, not the ranks that failed
because of it (their peer gone, their next collective errors out, sometimes before the dead
rank is reaped)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from distill.launch import _first_cause, launch
from subnet.errors import ConfigError


def _proc(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def test_a_rank_killed_by_a_signal_is_named_over_one_that_then_failed() -> None:
    killed = _proc("import time; time.sleep(60)")
    failed = _proc("raise SystemExit(2)")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    failed.wait()
    assert _first_cause([failed, killed], failed=0) == 1
    assert _first_cause([killed, failed], failed=1) == 0


def test_without_a_signal_the_rank_that_failed_is_named() -> None:
    ok, failed = _proc("pass"), _proc("raise SystemExit(3)")
    ok.wait()
    failed.wait()
    assert _first_cause([ok, failed], failed=1) == 1


def test_a_failing_rank_stops_the_others_and_is_one_line() -> None:
    # Each "rank" is the CLI with an unknown subcommand flag: argparse exits 2 at once.
    with pytest.raises(ConfigError, match=r"rank \d of 2 exited with status 2; the other ranks"):
        launch(2, ["distill", "train", "--no-such-flag"])
