"""The step's micro-batcher: first item at once, then whatever arrived meanwhile, in order."""

from __future__ import annotations

import asyncio

import pytest

from neurons.validator.pipeline import MicroBatcher


async def test_batches_are_what_arrived_while_the_previous_one_ran() -> None:
    seen: list[list[int]] = []
    release = asyncio.Event()

    async def process(batch: list[int]) -> None:
        seen.append(batch)
        if len(seen) == 1:
            await release.wait()  # the first batch is slow: others queue up meanwhile

    b = MicroBatcher(process, max_batch=4)
    b.submit(0)
    await asyncio.sleep(0)  # the worker takes item 0 alone
    for i in range(1, 7):
        b.submit(i)
    release.set()
    await b.join()
    assert seen == [[0], [1, 2, 3, 4], [5, 6]]  # capped at max_batch, arrival order kept
    assert b.batches == [1, 4, 2]


async def test_min_batch_waits_for_company_until_inputs_are_done() -> None:
    seen: list[list[int]] = []

    async def process(batch: list[int]) -> None:
        seen.append(batch)

    b = MicroBatcher(process, max_batch=8, min_batch=3)
    b.submit(0)
    b.submit(1)
    await asyncio.sleep(0.01)
    assert seen == []  # two are not a batch yet
    b.submit(2)
    await asyncio.sleep(0.01)
    assert seen == [[0, 1, 2]]
    b.submit(3)
    b.inputs_done()  # the last one goes alone
    await b.join()
    assert seen == [[0, 1, 2], [3]]
    with pytest.raises(ValueError, match="min_batch"):
        MicroBatcher(process, max_batch=2, min_batch=3)


async def test_join_reraises_a_processing_error_and_empty_join_returns() -> None:
    await MicroBatcher(lambda batch: asyncio.sleep(0), max_batch=1).join()

    async def boom(batch: list[int]) -> None:
        raise RuntimeError("teacher died")

    b = MicroBatcher(boom, max_batch=2)
    b.submit(1)
    with pytest.raises(RuntimeError, match="teacher died"):
        await b.join()
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(boom, max_batch=0)
