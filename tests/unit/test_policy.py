"""Caller policy: identity rules, token buckets, and stake-ordered admission under saturation."""

from __future__ import annotations

import asyncio

import pytest

from neurons.miner.policy import (
    CallerInfo,
    CallerPolicy,
    Denied,
    Directory,
    PolicyLimits,
    PriorityLimiter,
    TokenBuckets,
    refresh_loop,
)
from subnet.errors import ChainConnectionError


def test_identity_rules() -> None:
    d = Directory(
        {
            "v": CallerInfo(0, 100.0, True),
            "m": CallerInfo(1, 100.0, False),
            "poor": CallerInfo(2, 1.0, True),
        }
    )
    policy = CallerPolicy(d, PolicyLimits(min_stake=10.0))
    assert policy.admit("v").uid == 0
    for hotkey, cause in (
        ("x", "not_registered"),
        ("m", "no_validator_permit"),
        ("poor", "low_stake"),
    ):
        with pytest.raises(Denied) as e:
            policy.admit(hotkey)
        assert (e.value.status, e.value.cause) == (403, cause)
    assert CallerPolicy(d, PolicyLimits(require_permit=False)).admit("m").uid == 1


def test_token_bucket_burst_then_rate() -> None:
    now = [0.0]
    b = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [b.take("k") for _ in range(3)] == [0.0] * 3
    assert b.take("k") == pytest.approx(0.5)
    assert b.take("other") == 0.0
    now[0] += 0.5
    assert b.take("k") == 0.0 and b.take("k") > 0
    now[0] += 100
    assert [b.take("k") for _ in range(3)] == [0.0] * 3  # refills to burst, not beyond
    assert b.take("k") > 0


async def test_waiters_are_served_by_stake_then_fifo() -> None:
    lim = PriorityLimiter(capacity=1, max_queue=10)
    await lim.acquire(0.0, timeout=1)
    order: list[str] = []

    async def user(name: str, stake: float) -> None:
        await lim.acquire(stake, timeout=10)
        order.append(name)
        lim.release()

    tasks = []
    for name, stake in (("low", 1.0), ("high", 9.0), ("mid", 5.0), ("high2", 9.0)):
        tasks.append(asyncio.create_task(user(name, stake)))
        await asyncio.sleep(0)
    assert lim.waiting == 4
    lim.release()
    await asyncio.gather(*tasks)
    assert order == ["high", "high2", "mid", "low"]
    assert lim.active == 0 and lim.waiting == 0


async def test_full_queue_evicts_the_lowest_stake_or_refuses_the_newcomer() -> None:
    lim = PriorityLimiter(capacity=1, max_queue=1)
    await lim.acquire(0.0, timeout=1)
    low = asyncio.create_task(lim.acquire(1.0, timeout=10))
    await asyncio.sleep(0)
    with pytest.raises(Denied) as e:
        await lim.acquire(0.5, timeout=10)  # outranked by the waiter: refused
    assert (e.value.status, e.value.cause) == (429, "saturated")
    high = asyncio.create_task(lim.acquire(5.0, timeout=10))
    await asyncio.sleep(0)
    with pytest.raises(Denied):
        await low  # evicted for the higher-stake caller
    lim.release()
    await high
    assert lim.active == 1 and lim.waiting == 0


async def test_timeout_and_cancellation_leave_no_leaked_slot() -> None:
    lim = PriorityLimiter(capacity=1, max_queue=5)
    await lim.acquire(0.0, timeout=1)
    with pytest.raises(Denied):
        await lim.acquire(1.0, timeout=0.01)
    t = asyncio.create_task(lim.acquire(1.0, timeout=10))
    await asyncio.sleep(0)
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert lim.waiting == 0
    lim.release()
    assert lim.active == 0


async def test_refresh_keeps_the_old_directory_on_error() -> None:
    d = Directory({"v": CallerInfo(0, 1.0, True)})
    calls = 0
    errors: list[Exception] = []

    async def fetch() -> dict[str, CallerInfo]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("chain down")
        return {"w": CallerInfo(1, 2.0, True)}

    task = asyncio.create_task(refresh_loop(d, fetch, 0.001, errors.append))
    while calls < 2:
        await asyncio.sleep(0.001)
    task.cancel()
    assert len(errors) == 1 and d.lookup("w") is not None and d.lookup("v") is None


async def test_refresh_backs_off_while_the_chain_is_down_and_resumes_after() -> None:
    d = Directory()
    outcomes: list[Exception | None] = [ChainConnectionError("lost")] * 3 + [None, None]
    waits: list[float] = []

    async def fetch() -> dict[str, CallerInfo]:
        error = outcomes.pop(0)
        if error is not None:
            raise error
        return {"w": CallerInfo(1, 2.0, True)}

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if not outcomes:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await refresh_loop(d, fetch, 10.0, sleep=sleep)
    assert waits == [10.0, 20.0, 40.0, 10.0, 10.0]  # doubling while down, back to the interval
    assert d.lookup("w") is not None
