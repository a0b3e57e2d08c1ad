"""``subnet distill train --nproc N``: N local training processes, torchrun's way.

Each process is the same CLI command with ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT`` set, exactly what ``torchrun --standalone`` gives its
workers, so the trainer (:mod:`distill.distributed`) cannot tell the two apart and
``torchrun --nproc-per-node N -m subnet.cli distill train ...`` works the same (and is the way
across several machines). This launcher exists for the one thing torchrun does not do for a
CLI: when one process dies (an error, an out-of-memory kill, ``kill -9``) the others, blocked
in a collective, are stopped at once and the failure is one line naming the rank, not an
agent traceback. Checkpoints are atomic, so the same command resumes from the newest one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence

from subnet.errors import ConfigError

#: Seconds the surviving ranks get after SIGTERM before SIGKILL.
GRACE_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _first_cause(procs: Sequence[subprocess.Popen[bytes]], failed: int) -> int:
    """The rank to name when ``failed`` has exited non-zero: a rank killed by a signal before
    anyone stopped it is the cause, not the ranks whose next collective then failed (their
    peer gone, they exit with an error of their own, sometimes before the kill is reaped)."""
    for rank, p in enumerate(procs):
        code = p.poll()
        if code is not None and code < 0:
            return rank
    return failed


def launch(nproc: int, cli_args: Sequence[str], *, what: str = "training") -> int:
    """Run ``python -m subnet.cli *cli_args`` as ranks 0..nproc-1; 0 if all succeed.

    Raises ConfigError naming the first rank that failed (the others are stopped first).
    """
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "WORLD_SIZE": str(nproc),
        "LOCAL_WORLD_SIZE": str(nproc),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    cmd = [sys.executable, "-m", "subnet.cli", *cli_args]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for rank in range(nproc):
            rank_env = {**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}
            procs.append(subprocess.Popen(cmd, env=rank_env))
        by_pid = {p.pid: (rank, p) for rank, p in enumerate(procs)}
        running = set(by_pid)
        while running:
            pid, status = os.wait()
            if pid not in by_pid:
                continue
            rank, proc = by_pid[pid]
            proc.returncode = os.waitstatus_to_exitcode(status)
            running.discard(pid)
            if proc.returncode != 0:
                rank = _first_cause(procs, rank)
                _stop(procs)
                raise ConfigError(
                    f"rank {rank} of {nproc} {_describe(procs[rank].returncode)}; the other "
                    f"ranks were stopped. Rerun the same command to resume {what} from the "
                    "newest checkpoint"
                )
        return 0
    except BaseException:
        _stop(procs)
        raise
