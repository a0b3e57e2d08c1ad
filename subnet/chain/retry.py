"""Retrying chain calls that may succeed later, with bounded exponential backoff.

Only a ``ChainError`` marked ``transient`` (a lost connection, a timeout, a rate limit) is
worth another try by default: any other answer from the chain (no validator permit, not
registered, wrong version key) will be the same next time, so retrying it only delays the
report. Waits double up to a cap and the tries are bounded, so a chain that stays away
surfaces as an error instead of a silent stall. ``sleep`` is injectable: tests record the
waits instead of sitting through them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from subnet.errors import ChainError

log = logging.getLogger("subnet.chain.retry")

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Backoff:
    """``tries`` attempts in all, waiting ``base``, ``2*base``, ... (at most ``cap``) between."""

    base: float = 1.0
    cap: float = 60.0
    tries: int = 8

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failures in a row (1 -> ``base``)."""
        return min(self.cap, self.base * 2.0 ** max(0, failures - 1))


def is_transient(error: ChainError) -> bool:
    return error.transient


async def retrying(
    call: Callable[[], Awaitable[T]],
    what: str,
    backoff: Backoff,
    *,
    retry_if: Callable[[ChainError], bool] = is_transient,
    sleep: Sleep = asyncio.sleep,
) -> T:
    """``await call()``; a ChainError that ``retry_if`` accepts is retried with backoff, each
    one logged as a WARNING. The last failure, or one not worth retrying, propagates."""
    failures = 0
    while True:
        try:
            return await call()
        except ChainError as e:
            failures += 1
            if failures >= backoff.tries or not retry_if(e):
                raise
            delay = backoff.delay(failures)
            log.warning(
                "%s failed (try %d/%d, again in %.1fs): %s", what, failures, backoff.tries, delay, e
            )
            await sleep(delay)
