"""The localnet's process supervisor on real OS processes: nothing is ever left behind."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from neurons.localnet.procs import (
    ProcSpec,
    StopRequest,
    Supervisor,
    capture_signals,
    group_alive,
    log_tail,
)

PY = sys.executable


def _spec(tmp_path: Path, name: str, code: str, critical: bool = False) -> ProcSpec:
    return ProcSpec(name, (PY, "-c", code), tmp_path / f"{name}.log", {"X_TEST": "1"}, critical)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} never written")


# A parent that starts a grandchild (like vLLM's engine core) and records its pid.
SPAWNER = """
import subprocess, sys, time, pathlib
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
pathlib.Path(sys.argv[1]).write_text(str(child.pid))
print("spawned", child.pid, flush=True)
time.sleep(600)
"""


def test_stop_all_kills_children_and_grandchildren(tmp_path):
    marker = tmp_path / "grandchild.pid"
    spec = ProcSpec("spawner", (PY, "-c", SPAWNER, str(marker)), tmp_path / "spawner.log")
    with Supervisor(grace=5.0) as sup:
        pid = sup.start(spec)
        grandchild = int(_wait_for(marker))
        assert os.getpgid(grandchild) == pid  # same group: its own session, led by the child
        assert sup.alive() == ["spawner"]
    assert not group_alive(pid)
    assert not _pid_alive(grandchild)
    assert sup.poll() == []  # stopped by us: not reported as a death
    assert "spawned" in (tmp_path / "spawner.log").read_text()


def test_stop_escalates_to_kill_when_term_is_ignored(tmp_path):
    ready = tmp_path / "ready"
    code = (
        "import signal, time, pathlib, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "pathlib.Path(sys.argv[1]).write_text('1'); time.sleep(600)"
    )
    sup = Supervisor(grace=0.5)
    pid = sup.start(ProcSpec("stubborn", (PY, "-c", code, str(ready)), tmp_path / "s.log"))
    _wait_for(ready)
    sup.stop_all()
    assert not group_alive(pid)


def test_deaths_are_reported_once_with_code_signal_and_log_tail(tmp_path):
    with Supervisor(grace=2.0) as sup:
        sup.start(
            _spec(
                tmp_path,
                "crasher",
                "print('line one'); print('boom', flush=True); raise SystemExit(3)",
                critical=True,
            )
        )
        victim = sup.start(_spec(tmp_path, "victim", "import time; time.sleep(600)"))
        sup.start(_spec(tmp_path, "steady", "import time; time.sleep(600)"))
        os.kill(victim, signal.SIGKILL)
        deaths: list = []
        deadline = time.monotonic() + 20
        while len(deaths) < 2 and time.monotonic() < deadline:
            deaths += sup.poll()
            time.sleep(0.05)
        by_name = {d.name: d for d in deaths}
        assert set(by_name) == {"crasher", "victim"}
        assert by_name["crasher"].reason == "exited with code 3"
        assert by_name["crasher"].critical and not by_name["victim"].critical
        assert by_name["crasher"].log_tail.splitlines()[-2:] == ["line one", "boom"]
        assert by_name["victim"].reason == "killed by signal SIGKILL"
        assert sup.poll() == []  # each death once
        assert sup.alive() == ["steady"]


def test_a_name_cannot_be_started_twice(tmp_path):
    with Supervisor(grace=1.0) as sup:
        sup.start(_spec(tmp_path, "a", "import time; time.sleep(600)"))
        with pytest.raises(ValueError, match="already started"):
            sup.start(_spec(tmp_path, "a", "pass"))


def test_child_environment_is_merged(tmp_path):
    with Supervisor(grace=1.0) as sup:
        sup.start(_spec(tmp_path, "env", "import os; print('X_TEST=' + os.environ['X_TEST'])"))
        deadline = time.monotonic() + 20
        while sup.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        [death] = sup.poll()
    assert death.reason == "exited with code 0"
    assert "X_TEST=1" in death.log_tail


def test_log_tail_reads_the_end_of_large_and_missing_logs(tmp_path):
    log = tmp_path / "big.log"
    log.write_text("".join(f"line {i}\n" for i in range(100_000)))
    assert log_tail(log, 3).splitlines() == ["line 99997", "line 99998", "line 99999"]
    assert "log unreadable" in log_tail(tmp_path / "missing.log")


def test_capture_signals_sets_the_flag_then_forces_and_restores_handlers():
    before = signal.getsignal(signal.SIGTERM)
    stop = StopRequest()
    with capture_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert stop and stop.signal == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    assert signal.getsignal(signal.SIGTERM) is before
