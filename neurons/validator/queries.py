"""Asking the step's questions: every miner over the network, the baseline student locally.

Both return one :class:`~neurons.validator.miner_client.MinerAnswer` per (participant, task),
never raising for one answer's sake: a miner's failure is in its answer's cause, and anything
unexpected on our side becomes ``VALIDATOR_ERROR`` for that answer alone.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np

from neurons.validator import miner_client
from neurons.validator.miner_client import MinerAnswer, Query, Target
from neurons.validator.participant import BASELINE, Miner
from scoring.causes import Cause
from subnet.config import ValidatorConfig
from subnet.engine import Engine, SamplingParams

log = logging.getLogger("subnet.validator.queries")


@dataclass
class Baseline:
    """The validator's own reference student, answered locally and scored like a miner."""

    engine: Engine
    identity: str
    digest: str


async def query_miners(
    session: aiohttp.ClientSession,
    signer: Any,
    hotkey: str,
    targets: Sequence[Target],
    queries: Sequence[Query],
    vc: ValidatorConfig,
    seed: str = "",
    on_answer: Callable[[MinerAnswer], None] | None = None,
) -> list[MinerAnswer]:
    """Every target answers every query: concurrent (``vc.concurrency``), streamed, signed.

    Requests go out in an order shuffled by the step's ``seed``, not by uid: whatever the
    validator's own sending costs a request, no miner pays it every step. Answers come back in
    (target, query) order; ``on_answer`` sees each one the moment it is complete (the step
    starts judging it then).
    """
    sem = asyncio.Semaphore(vc.concurrency)

    async def one(target: Target, q: Query) -> MinerAnswer:
        answer = await ask(target, q)
        if on_answer is not None:
            on_answer(answer)
        return answer

    async def ask(target: Target, q: Query) -> MinerAnswer:
        async with sem:
            try:
                return await miner_client.query(
                    session,
                    signer,
                    hotkey,
                    target,
                    q,
                    timeout=vc.query_timeout,
                    max_bytes=vc.max_response_bytes,
                )
            except Exception as e:  # backstop: one miner's answer must never fail the step
                log.exception("query of uid %d failed unexpectedly", target.uid)
                return MinerAnswer(
                    Miner(target.uid, target.hotkey),
                    q.task_id,
                    Cause.VALIDATOR_ERROR,
                    detail=f"{type(e).__name__}: {str(e)[:200]}",
                )

    pairs = [(t, q) for t in targets for q in queries]
    order = list(range(len(pairs)))
    random.Random(f"{seed}|dispatch").shuffle(order)
    started = {i: asyncio.ensure_future(one(*pairs[i])) for i in order}  # in shuffled order
    return list(await asyncio.gather(*(started[i] for i in range(len(pairs)))))


async def baseline_answers(b: Baseline, queries: Sequence[Query]) -> list[MinerAnswer]:
    """The reference student answers locally (no network: its speed is not scored)."""
    q0 = queries[0]
    t0 = time.perf_counter()
    outs = await asyncio.gather(
        *(
            b.engine.generate(
                [list(q.prompt_ids)],
                SamplingParams(
                    max_tokens=q.max_tokens,
                    temperature=q.temperature,
                    seed=q.seed,
                    top_logprobs=q0.k,
                ),
            )
            for q in queries
        )
    )
    total = time.perf_counter() - t0
    return [
        MinerAnswer(
            BASELINE,
            q.task_id,
            Cause.OK,
            token_ids=c.token_ids,
            sampled_logprobs=c.sampled_logprobs.astype(np.float64),
            top_ids=c.top_ids,
            top_logprobs=c.top_logprobs.astype(np.float64),
            finish_reason=c.finish_reason,
            identity=b.identity,
            ttft_s=total,
            total_s=total,
        )
        for q, [c] in zip(queries, outs, strict=True)
    ]
