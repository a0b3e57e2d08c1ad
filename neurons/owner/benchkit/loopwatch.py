"""How late an event loop runs its callbacks, and the process's resident memory, while a load
runs: a task that asks to wake every ``period`` seconds records how late it woke (a blocking call
on the loop shows up as lag) and samples RSS."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field

import numpy as np

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Resident set size now (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


@dataclass
class LoopWatch:
    period: float = 0.002
    lags: list[float] = field(default_factory=list)
    peak_rss: int = 0
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(self.period)
            self.lags.append(max(0.0, time.perf_counter() - t0 - self.period))
            self.peak_rss = max(self.peak_rss, rss_bytes())

    def start(self) -> None:
        self.lags.clear()
        self.peak_rss = rss_bytes()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> dict[str, float]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        lags = np.asarray(self.lags or [0.0])
        return {
            "loop_lag_p99_ms": float(np.percentile(lags, 99)) * 1e3,
            "loop_lag_max_ms": float(lags.max()) * 1e3,
            "peak_rss_mb": self.peak_rss / 2**20,
        }
