"""The validator's miner client against hostile miners on a real aiohttp server (loopback).

Every answer a miner's bytes can provoke is the miner's failure with a cause that counts toward
its EMA (never ``validator_error``, which would freeze it), and the client never follows a
redirect: the signed body and btauth headers go to the miner's announced endpoint only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from bittensor.sp_core import Keypair

from neurons.validator import miner_client
from neurons.validator.miner_client import Query, Target
from neurons.validator.queries import query_miners
from scoring.causes import Cause, Role, counts_toward_ema
from subnet import auth, protocol
from subnet.config import load_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

MINER = Keypair.create_from_uri("//HostileMiner")
VALI = Keypair.create_from_uri("//HostileVali")
QUERY = Query("task-1", (1, 2, 3), 4, 1, 1.0, 7)
DEEP = b"[" * 100_000 + b"]" * 100_000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest_asyncio.fixture(loop_scope="module")
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for r in runners:
        await r.cleanup()


def signed_stream(request_body: bytes, nonce: int, events: list[bytes]) -> bytes:
    """A stream the miner really signed, whatever its content events hold."""
    prefix = b"".join(b"data: " + e + b"\n\n" for e in events)
    fields = auth.sign_response(
        MINER,
        status=200,
        path=protocol.COMPLETIONS_PATH,
        request_body=request_body,
        caller=VALI.ss58_address,
        request_nonce=nonce,
        body_sha256=hashlib.sha256(prefix).hexdigest(),
    )
    return prefix + protocol.sse_event(auth.stream_signature_event(fields)) + protocol.SSE_DONE


def stream_handler(events: list[bytes] | None, tail: bytes | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        nonce = int(request.headers["X-Bittensor-Nonce"])
        raw = tail if tail is not None else signed_stream(body, nonce, events or [])
        return web.Response(body=raw, content_type="text/event-stream")

    return handler


async def ask(base: str) -> miner_client.MinerAnswer:
    async with aiohttp.ClientSession() as s:
        return await miner_client.query(
            s,
            VALI,
            VALI.ss58_address,
            Target(4, MINER.ss58_address, base),
            QUERY,
            timeout=20.0,
            max_bytes=4 << 20,
        )


CHUNK = json.dumps(
    {
        "choices": [{"text": "", "index": 0, "logprobs": {"token_logprobs": [-0.1]}}],
        "subnet": {"token_ids": [5], "top_k": {"ids": [[5]], "logprobs": [[-0.1]]}},
    }
).encode()


async def test_an_honest_signed_stream_is_ok(serve) -> None:
    answer = await ask(await serve(stream_handler([CHUNK])))
    assert answer.cause == Cause.OK and answer.token_ids.tolist() == [5]


@pytest.mark.parametrize(
    ("events", "tail", "cause"),
    [
        ([CHUNK, DEEP], None, Cause.FORMAT_SCHEMA),  # signed, one event nested past json's limit
        (None, b"data: " + DEEP + b"\n\n" + protocol.SSE_DONE, Cause.BAD_SIGNATURE),
        (
            None,
            b'data: {"object":"subnet.signature","subnet":{"signature":'
            + DEEP
            + b"}}\n\n"
            + protocol.SSE_DONE,
            Cause.BAD_SIGNATURE,
        ),
        ([CHUNK.replace(b"[5]", b"[5.0]", 1)], None, Cause.FORMAT_SCHEMA),
        ([CHUNK.replace(b"[5]", b'["5"]', 1)], None, Cause.FORMAT_SCHEMA),
    ],
    ids=["deep_content", "deep_unsigned", "deep_signature", "float_id", "string_id"],
)
async def test_hostile_bytes_are_the_miners_failure(serve, events, tail, cause) -> None:
    base = await serve(stream_handler(events, tail))
    answer = await ask(base)
    assert answer.cause == cause, answer.detail
    assert counts_toward_ema(Role.MINER, answer.cause)
    # and through the step's fan-out, whose backstop would have said validator_error
    cfg = load_config(None, env={}, overrides={"validator.query_timeout": 20.0}).validator
    async with aiohttp.ClientSession() as s:
        [again] = await query_miners(
            s, VALI, VALI.ss58_address, [Target(4, MINER.ss58_address, base)], [QUERY], cfg
        )
    assert again.cause == cause


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_never_followed(serve, status: int) -> None:
    seen: list[dict[str, str]] = []

    async def elsewhere(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        return await stream_handler([CHUNK])(request)

    other = await serve(elsewhere)

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(status=status, headers={"Location": other + protocol.COMPLETIONS_PATH})

    answer = await ask(await serve(handler))
    assert answer.cause == Cause.HTTP_ERROR and f"redirect {status}" in answer.detail
    assert seen == []  # neither the body nor the btauth headers left for the other host


RAW_RESPONSES = {
    "garbage": b"\x00\xffnot http at all\r\n\r\n",
    "bad_status_line": b"HTTP/1.1 two hundred OK\r\n\r\n",
    "header_line_too_long": b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 200_000 + b"\r\n\r\n",
    "broken_chunks": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
    "short_body": b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\ndata: {}\n\n",
    "bad_gzip": b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nnotgz",
    "invalid_utf8_error": b"HTTP/1.1 500 X\r\nContent-Length: 4\r\n\r\n\xff\xfe\xfd\xfc",
}


@pytest.mark.parametrize("name", sorted(RAW_RESPONSES))
async def test_malformed_http_from_a_miner_is_the_miners_failure(name: str) -> None:
    """Bytes below SSE (the HTTP layer itself) are the miner's too: never an exception."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # the request (small, sent at once)
        writer.write(RAW_RESPONSES[name])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        answer_ = await ask(f"http://127.0.0.1:{port}")
    finally:
        server.close()
        await server.wait_closed()
    assert answer_.cause in (Cause.HTTP_ERROR, Cause.BAD_SIGNATURE, Cause.FORMAT_SCHEMA)
    assert counts_toward_ema(Role.MINER, answer_.cause), answer_.detail
