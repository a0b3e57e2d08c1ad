"""Process supervision for the localnet: start, watch and always stop real OS processes.

Every child runs in its own session (``start_new_session=True``), so its process group holds
everything it spawns (vLLM's engine core and workers included) and the terminal's Ctrl-C
reaches only the localnet, which then stops the children itself: ``SIGTERM`` to each group, a
bounded wait, then ``SIGKILL`` to whatever is left of the group. Stopping is idempotent and is
run from ``__exit__``, so an exception or a signal anywhere leaves no process behind.

A child that exits on its own is reported once by :meth:`Supervisor.poll` with its exit code
or signal and the tail of its log; its group is killed too, so orphaned engine workers of a
dead miner do not keep the machine's two cores busy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class ProcSpec:
    """What to run. ``critical``: its death ends the whole run (the validator)."""

    name: str
    argv: tuple[str, ...]
    log: Path
    env: Mapping[str, str] = field(default_factory=dict)
    critical: bool = False


@dataclass(frozen=True)
class ProcExit:
    """A child that exited on its own (not stopped by us)."""

    name: str
    pid: int
    returncode: int
    critical: bool
    log: Path
    log_tail: str

    @property
    def reason(self) -> str:
        if self.returncode < 0:
            try:
                return f"killed by signal {signal.Signals(-self.returncode).name}"
            except ValueError:
                return f"killed by signal {-self.returncode}"
        return f"exited with code {self.returncode}"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log (reads at most the last 64 KiB)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 65536))
            text = fh.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(log unreadable: {e})"
    return "\n".join(text.splitlines()[-lines:])


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # a reused pgid we do not own: not ours to touch
        return False
    return True


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still exists (zombies of ours are reaped first)."""
    return _signal_group(pgid, 0)


class Supervisor:
    """Owns the children of one run; use as a context manager so they are always stopped."""

    def __init__(self, grace: float = 15.0) -> None:
        self.grace = grace
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._specs: dict[str, ProcSpec] = {}
        self._reported: set[str] = set()
        self._stopping = False

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(self, spec: ProcSpec) -> int:
        """Start ``spec`` in a new session with stdout+stderr appended to its log; its pid."""
        if spec.name in self._procs:
            raise ValueError(f"a process named {spec.name!r} was already started")
        spec.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **spec.env}
        with spec.log.open("ab") as out:
            out.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(spec.argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                list(spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self._procs[spec.name] = proc
        self._specs[spec.name] = spec
        return proc.pid

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self._procs.items()}

    def alive(self) -> list[str]:
        return [name for name, p in self._procs.items() if p.poll() is None]

    def poll(self) -> list[ProcExit]:
        """Children that exited since the last call (each reported once); their groups die."""
        out = []
        for name, proc in self._procs.items():
            code = proc.poll()
            if code is None or name in self._reported:
                continue
            self._reported.add(name)
            _signal_group(proc.pid, signal.SIGKILL)  # orphans of the dead leader
            spec = self._specs[name]
            out.append(ProcExit(name, proc.pid, code, spec.critical, spec.log, log_tail(spec.log)))
        return out

    def stop(self, names: Sequence[str] | None = None, grace: float | None = None) -> None:
        """TERM the groups of ``names`` (default: all), wait up to ``grace`` s, KILL the rest."""
        grace = self.grace if grace is None else grace
        targets = {n: p for n, p in self._procs.items() if names is None or n in names}
        for name, proc in targets.items():
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
            self._reported.add(name)  # stopped by us: not a death to report
        deadline = time.monotonic() + grace
        for proc in targets.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in targets.values():
            if group_alive(proc.pid):
                _signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5.0)
        self._wait_groups_gone([p.pid for p in targets.values()], timeout=5.0)

    def stop_all(self, grace: float | None = None) -> None:
        if self._stopping:
            return
        self._stopping = True
        try:
            self.stop(None, grace)
        finally:
            self._stopping = False

    @staticmethod
    def _wait_groups_gone(pgids: Sequence[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(group_alive(g) for g in pgids):
            time.sleep(0.05)


class StopRequest:
    """Set by the first SIGINT/SIGTERM; the second one raises ``KeyboardInterrupt`` (force)."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum


@contextlib.contextmanager
def capture_signals(stop: StopRequest) -> Iterator[StopRequest]:
    """Route SIGINT/SIGTERM to ``stop`` inside the block; the previous handlers come back after
    (uvicorn's ``capture_signals``), so a stop request ends the main loop instead of unwinding
    it at a random line."""
    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, stop.handle)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
