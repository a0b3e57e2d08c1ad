"""Fair speed measurement: a step's requests go out in a seeded order, and each request's clock
starts when it is on the wire, so the validator's own sending is not charged to the miners."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from neurons.validator import miner_client, queries
from neurons.validator.miner_client import MinerAnswer, Query, Target, _Sent, miner_session
from neurons.validator.participant import Miner
from scoring.causes import Cause
from subnet.config import load_config

TARGETS = [Target(uid, f"hk{uid}", f"http://127.0.0.2:{9000 + uid}") for uid in range(2, 7)]
QUERIES = [Query(f"t{i}", (1, 2, 3), 8, 5, 1.0, i) for i in range(4)]


async def test_requests_go_out_in_a_seeded_order_and_answers_come_back_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[tuple[int, str]] = []

    async def fake_query(
        session: Any, wallet: Any, hotkey: str, target: Target, q: Query, **kw: Any
    ) -> MinerAnswer:
        sent.append((target.uid, q.task_id))
        return MinerAnswer(Miner(target.uid, target.hotkey), q.task_id, Cause.OK)

    monkeypatch.setattr(miner_client, "query", fake_query)
    vc = load_config(None, env={}).validator
    orders = []
    for seed in ("block-a", "block-b", "block-a"):
        sent.clear()
        answers = await queries.query_miners(None, None, "me", TARGETS, QUERIES, vc, seed)  # type: ignore[arg-type]
        assert [(a.who.uid, a.task_id) for a in answers] == [
            (t.uid, q.task_id) for t in TARGETS for q in QUERIES
        ]
        assert sorted(sent) == sorted((t.uid, q.task_id) for t in TARGETS for q in QUERIES)
        orders.append(list(sent))
    assert orders[0] == orders[2]  # the same step seed, the same order
    assert orders[0] != orders[1]  # another step, another order
    assert orders[0][0][0] != 2 or orders[1][0][0] != 2  # uid 2 is not always first


async def test_a_miner_session_starts_each_clock_when_the_request_is_on_the_wire() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/x", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/x"
    try:
        before = time.perf_counter()
        stamp = _Sent()
        async with (
            miner_session() as session,
            session.post(url, data=b"{}", trace_request_ctx=stamp) as resp,
        ):
            assert resp.status == 200
            after = time.perf_counter()
        assert stamp.at is not None and before <= stamp.at <= after
        plain = _Sent()
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=b"{}", trace_request_ctx=plain),
        ):
            pass
        assert plain.at is None  # a plain session records nothing: query() falls back
    finally:
        await runner.cleanup()
