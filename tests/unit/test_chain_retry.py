"""Bounded exponential backoff: what is retried, how long it waits, when it gives up."""

from __future__ import annotations

import pytest

from subnet.chain.retry import Backoff, retrying
from subnet.errors import ChainConnectionError, ChainError


class Recorder:
    """An injected ``sleep``: records each wait instead of waiting it."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def flaky(*errors: Exception, result: int = 7):
    """A call that raises ``errors`` one per call, then returns ``result``."""
    pending = list(errors)
    calls = []

    async def call() -> int:
        calls.append(1)
        if pending:
            raise pending.pop(0)
        return result

    call.calls = calls  # type: ignore[attr-defined]
    return call


def test_delays_double_up_to_the_cap():
    backoff = Backoff(base=1.0, cap=5.0)
    assert [backoff.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.delay(0) == 1.0  # no failure yet: the base interval


async def test_transient_failures_are_retried_with_growing_waits():
    sleep = Recorder()
    call = flaky(ChainConnectionError("lost"), ChainConnectionError("lost"))
    assert await retrying(call, "read", Backoff(base=0.5, tries=5), sleep=sleep) == 7
    assert sleep.waits == [0.5, 1.0] and len(call.calls) == 3


async def test_the_chain_s_answer_is_not_retried():
    sleep = Recorder()
    call = flaky(ChainError("no permit", "NeuronNoValidatorPermit"))
    with pytest.raises(ChainError, match="no permit"):
        await retrying(call, "set", Backoff(), sleep=sleep)
    assert sleep.waits == [] and len(call.calls) == 1


async def test_tries_are_bounded_and_the_last_failure_propagates():
    sleep = Recorder()
    call = flaky(*(ChainConnectionError(f"lost {i}") for i in range(10)))
    with pytest.raises(ChainConnectionError, match="lost 2"):
        await retrying(call, "read", Backoff(base=1.0, tries=3), sleep=sleep)
    assert sleep.waits == [1.0, 2.0] and len(call.calls) == 3


async def test_retry_if_widens_what_is_retried():
    sleep = Recorder()
    call = flaky(ChainError("block subscription ended"))
    got = await retrying(call, "wait", Backoff(tries=2), retry_if=lambda e: True, sleep=sleep)
    assert got == 7 and sleep.waits == [1.0]
