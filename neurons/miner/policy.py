"""Who may call the miner and how often: caller directory, token buckets, stake-ordered slots.

Decisions read only in-memory state: the metagraph is refreshed by a background task
(:func:`refresh_loop`), never on the request path, so a slow chain cannot stall requests. A
failed refresh keeps the previous directory (and is counted).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from subnet.chain.retry import Backoff, Sleep
from subnet.errors import SubnetError

log = logging.getLogger("subnet.miner.policy")


@dataclass(frozen=True)
class CallerInfo:
    uid: int
    stake: float
    validator_permit: bool


class CallerDirectory(Protocol):
    def lookup(self, hotkey: str) -> CallerInfo | None: ...


class Directory:
    """hotkey -> CallerInfo, swapped atomically by the refresher."""

    def __init__(self, callers: Mapping[str, CallerInfo] | None = None) -> None:
        self._callers: Mapping[str, CallerInfo] = dict(callers or {})
        self.updated_at: float | None = None

    def lookup(self, hotkey: str) -> CallerInfo | None:
        return self._callers.get(hotkey)

    def replace(self, callers: Mapping[str, CallerInfo]) -> None:
        self._callers = dict(callers)
        self.updated_at = time.time()

    def __len__(self) -> int:
        return len(self._callers)


def callers_from_metagraph(neurons: Iterable[Any]) -> dict[str, CallerInfo]:
    """``MetagraphView.neurons`` (uid, hotkey, stake, validator_permit) -> directory rows."""
    return {
        n.hotkey: CallerInfo(
            uid=int(n.uid), stake=float(n.stake), validator_permit=bool(n.validator_permit)
        )
        for n in neurons
    }


async def refresh_loop(
    directory: Directory,
    fetch: Callable[[], Awaitable[Mapping[str, CallerInfo]]],
    interval: float,
    on_error: Callable[[Exception], None] | None = None,
    *,
    sleep: Sleep = asyncio.sleep,
) -> None:
    """Replace the directory every ``interval`` seconds until cancelled; errors keep the old.

    Each failure in a row doubles the wait (at most 8 intervals), so a chain that is down is
    not polled at full rate; the first success returns to ``interval``.
    """
    backoff = Backoff(base=interval, cap=8 * interval)
    failures = 0
    while True:
        try:
            directory.replace(await fetch())
            failures = 0
        except Exception as e:  # keep serving with what we have; a bug keeps its traceback
            failures += 1
            log.warning(
                "caller directory refresh failed (%d in a row): %s",
                failures,
                e,
                exc_info=not isinstance(e, SubnetError),
            )
            if on_error is not None:
                on_error(e)
        await sleep(backoff.delay(failures))


class Denied(Exception):
    """A caller refused by policy: 403 (who) or 429 (how much, with Retry-After seconds)."""

    def __init__(
        self, status: int, cause: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.cause = cause
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class PolicyLimits:
    min_stake: float = 0.0
    require_permit: bool = True
    rate_rps: float = 10.0
    burst: int = 40


class TokenBuckets:
    """Per-key token buckets. ``take`` returns 0 when allowed, else seconds until it would be."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = rate, float(burst), clock
        self._state: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> float:
        now = self.clock()
        tokens, at = self._state.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._state[key] = (tokens - 1.0, now)
            return 0.0
        self._state[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


class CallerPolicy:
    """Admission by identity (403) and per-hotkey rate (429)."""

    def __init__(
        self,
        directory: CallerDirectory,
        limits: PolicyLimits,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.limits = limits
        self.buckets = TokenBuckets(limits.rate_rps, limits.burst, clock)

    def admit(self, hotkey: str) -> CallerInfo:
        info = self.directory.lookup(hotkey)
        if info is None:
            raise Denied(403, "not_registered", "caller hotkey is not registered on this subnet")
        if self.limits.require_permit and not info.validator_permit:
            raise Denied(403, "no_validator_permit", "caller has no validator permit")
        if info.stake < self.limits.min_stake:
            raise Denied(403, "low_stake", f"caller stake is below {self.limits.min_stake:g}")
        wait = self.buckets.take(hotkey)
        if wait > 0:
            raise Denied(429, "rate_limited", "per-hotkey rate limit exceeded", retry_after=wait)
        return info


@dataclass(order=True)
class _Waiter:
    rank: float  # -stake: higher stake sorts first
    seq: int
    future: asyncio.Future[None] = field(compare=False)


class PriorityLimiter:
    """At most ``capacity`` holders; waiters are served by stake (FIFO among equals).

    A full queue turns away the lowest-stake waiter if the newcomer outranks it, else the
    newcomer: under saturation the highest-stake validators keep their place.
    """

    def __init__(self, capacity: int, max_queue: int, retry_after: float = 1.0) -> None:
        self.capacity = capacity
        self.max_queue = max_queue
        self.retry_after = retry_after
        self.active = 0
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _saturated(self) -> Denied:
        return Denied(429, "saturated", "server at capacity", retry_after=self.retry_after)

    async def acquire(self, stake: float, timeout: float) -> None:
        if self.active < self.capacity and not self._waiters:
            self.active += 1
            return
        if len(self._waiters) >= self.max_queue:
            if not self._waiters or self._waiters[-1].rank <= -stake:
                raise self._saturated()
            evicted = self._waiters.pop()
            evicted.future.set_exception(self._saturated())
        waiter = _Waiter(-stake, next(self._seq), asyncio.get_running_loop().create_future())
        bisect.insort(self._waiters, waiter)
        try:
            await asyncio.wait_for(waiter.future, timeout)
        except TimeoutError:
            self._forget(waiter)
            raise self._saturated() from None
        except BaseException:
            self._forget(waiter)
            raise

    def _forget(self, waiter: _Waiter) -> None:
        f = waiter.future
        if f.done() and not f.cancelled() and f.exception() is None:
            self.release()  # granted while we were being cancelled: pass it on
        elif waiter in self._waiters:
            self._waiters.remove(waiter)

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.future.done():
                waiter.future.set_result(None)  # the slot moves to the waiter
                return
        self.active -= 1


def retry_after_header(seconds: float | None) -> str:
    return str(max(1, math.ceil(seconds or 1.0)))
