"""Hostile miners against the gateway's upstream client: every way a miner's bytes can go wrong
is a ``MinerFailure`` with its cause (the gateway fails over), never an exception of ours.

The "miner" is a real aiohttp server on loopback writing crafted SSE, signed with a real hotkey
where the case needs a valid signature.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from neurons.gateway.routing import Candidate
from neurons.gateway.upstream import Ask, Limits, MinerFailure, Signed, Tokens, stream
from subnet import auth, protocol
from subnet.wallets import create_wallet, hotkey_address

VOCAB = 100
LIMITS = Limits(vocab_size=VOCAB, first_token_timeout=1.0, idle_timeout=1.0, max_bytes=64 << 10)
ASK = Ask((1, 2, 3), 4, 1.0, 1.0, 7, 2, "prompt")


def chunk(ids: list[int], finish: str | None = None) -> bytes:
    return protocol.sse_event(
        {
            "object": "text_completion",
            "choices": [{"index": 0, "text": "", "finish_reason": finish}],
            "subnet": {"token_ids": ids},
        }
    )


@dataclass
class Miner:
    wallet: Any
    caller: str
    mode: str = "ok"
    events: list[bytes] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if self.mode == "500":
            return web.Response(status=500, text="boom")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if self.mode == "slow":
            await asyncio.sleep(3)
        prefix = b"".join(self.events)
        await resp.write(prefix)
        if self.mode == "cut":
            assert request.transport is not None
            request.transport.abort()  # the process died: no goodbye
            return resp
        signer = (
            self.wallet
            if self.mode != "impostor"
            else create_wallet("impostor", "default", Path(self.wallet.path).parent / "other")
        )
        fields = auth.sign_response(
            signer,
            status=200,
            path=request.raw_path,
            request_body=body,
            caller=self.caller,
            request_nonce=int(request.headers["X-Bittensor-Nonce"]),
            body_sha256=hashlib.sha256(prefix).hexdigest(),
        )
        if self.mode != "unsigned":
            await resp.write(protocol.sse_event(auth.stream_signature_event(fields)))
        if self.mode == "trailing":
            await resp.write(chunk([1]))
        await resp.write(protocol.SSE_DONE)
        return resp


@pytest.fixture
async def miner(tmp_path: Path) -> AsyncIterator[tuple[Miner, Candidate, Any]]:
    mw = create_wallet("miner", "default", tmp_path / "w")
    vw = create_wallet("vali", "default", tmp_path / "w")
    m = Miner(mw, hotkey_address(vw))
    app = web.Application()
    app.router.add_post(protocol.COMPLETIONS_PATH, m.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield m, Candidate(1, hotkey_address(mw), f"http://127.0.0.1:{port}", 0.5), vw
    finally:
        await runner.cleanup()


async def _collect(target: Candidate, wallet: Any, caller: str) -> list[Tokens | Signed]:
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        return [
            ev
            async for ev in stream(session, wallet, caller, target, ASK, LIMITS, loop.time() + 30)
        ]


async def test_a_good_stream_yields_tokens_then_the_signed_answer(miner) -> None:
    m, target, vw = miner
    m.events = [chunk([5, 6]), chunk([7], "stop")]
    events = await _collect(target, vw, m.caller)
    assert events[:2] == [Tokens((5, 6), None), Tokens((7,), "stop")]
    signed = events[2]
    assert isinstance(signed, Signed) and signed.raw.endswith(protocol.SSE_DONE)
    assert b'"logprobs":2' in signed.request_body and b'"task_id":"jsonl-' in signed.request_body


@pytest.mark.parametrize(
    ("mode", "events", "cause"),
    [
        ("500", [], "http_error"),
        ("ok", [b"data: {nope\n\n"], "format_schema"),
        ("ok", [b"event: x\n\n"], "format_schema"),
        ("ok", [protocol.sse_event({"choices": []})], "format_schema"),
        ("ok", [chunk([VOCAB])], "format_token_id"),
        ("ok", [chunk([-1])], "format_token_id"),
        ("ok", [chunk([True])], "format_token_id"),
        ("ok", [chunk([1], "weird")], "format_schema"),
        ("ok", [protocol.sse_event({"error": {"code": "oops"}})], "miner_error"),
        ("ok", [chunk([1, 2, 3]), chunk([4, 5], "length")], "too_long"),
        ("ok", [chunk([1]) + b"data: " + b"x" * (64 << 10)], "format_schema"),  # over max_bytes
        ("unsigned", [chunk([1], "stop")], "bad_signature"),
        ("impostor", [chunk([1], "stop")], "bad_signature"),
        ("trailing", [chunk([1], "stop")], "format_schema"),
        ("slow", [chunk([1], "stop")], "timeout"),
        ("cut", [chunk([1])], "http_error"),
    ],
)
async def test_hostile_streams_are_the_miners_failure(
    miner, mode: str, events: list[bytes], cause: str
) -> None:
    m, target, vw = miner
    m.mode, m.events = mode, events
    with pytest.raises(MinerFailure) as e:
        await _collect(target, vw, m.caller)
    assert e.value.cause == cause, e.value


async def test_an_answer_signed_for_another_caller_fails(miner) -> None:
    m, target, vw = miner
    m.events = [chunk([1], "stop")]
    m.caller = "5SomeoneElse"  # the miner binds its signature to a different caller
    with pytest.raises(MinerFailure) as e:
        await _collect(target, vw, hotkey_address(vw))
    assert e.value.cause == "bad_signature"


async def test_nothing_listening_is_an_http_error(tmp_path: Path) -> None:
    vw = create_wallet("vali", "default", tmp_path / "w")
    target = Candidate(1, hotkey_address(vw), "http://127.0.0.1:9", 0.5)
    with pytest.raises(MinerFailure) as e:
        await _collect(target, vw, hotkey_address(vw))
    assert e.value.cause == "http_error"
