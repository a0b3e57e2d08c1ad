"""The miner's HTTP API on a real aiohttp server (loopback) with the hf engine on a tiny model.

Callers are real sr25519 keypairs; the caller directory stands in for the metagraph (the chain
path is covered by tests/e2e/test_miner_devnet.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np
import openai
import pytest
import pytest_asyncio
from aiohttp import web
from bittensor import http_auth
from bittensor.sp_core import Keypair
from multidict import CIMultiDict

from distill.tiny import TinyWorld
from neurons.miner.app import Gate, build_app
from neurons.miner.connections import ConnectionGuard, ConnectionLimits, GuardedRunner
from neurons.miner.policy import (
    CallerInfo,
    CallerPolicy,
    Directory,
    PolicyLimits,
    PriorityLimiter,
)
from neurons.miner.serving import MinerService, load_codec
from subnet import auth, protocol, protocol_chat
from subnet.chat import parse_messages
from subnet.engine import load_engine
from subnet.engine.types import Completion, Engine, SamplingParams, StreamingEngine
from subnet.errors import ConfigError
from subnet.metrics import MinerMetrics, serve_metrics
from subnet.tokenizer import ModelTokenizer
from tests.harness.chat_model import chat_model

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

MINER = Keypair.create_from_uri("//MinerHttp")
VALI = Keypair.create_from_uri("//ValiHttp")
VALI2 = Keypair.create_from_uri("//ValiHttp2")
WEAK = Keypair.create_from_uri("//WeakVali")
NOPERMIT = Keypair.create_from_uri("//NoPermit")
STRANGER = Keypair.create_from_uri("//Stranger")
PATH = protocol.COMPLETIONS_PATH
IDENTITY = "v1:" + "ab" * 32 + ":tiny:test"


@pytest.fixture(scope="module")
def model_dir(tiny: TinyWorld) -> Path:
    return tiny.teacher


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> StreamingEngine:
    return load_engine("hf", model_dir)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Server = Callable[..., Awaitable[tuple[str, Clock, MinerMetrics]]]
RUNNERS: dict[str, web.AppRunner] = {}  # base url -> its runner (to watch its connections)


@pytest_asyncio.fixture(loop_scope="module")
async def server(engine: Engine, model_dir: Path, tmp_path: Path) -> AsyncIterator[Server]:
    runners: list[web.AppRunner] = []

    async def start(**limits: Any) -> tuple[str, Clock, MinerMetrics]:
        clock = Clock()
        directory = Directory(
            {
                VALI.ss58_address: CallerInfo(0, 1000.0, True),
                VALI2.ss58_address: CallerInfo(1, 500.0, True),
                WEAK.ss58_address: CallerInfo(2, 1.0, True),
                NOPERMIT.ss58_address: CallerInfo(3, 1000.0, False),
            }
        )
        policy = CallerPolicy(
            directory,
            PolicyLimits(
                min_stake=limits.pop("min_stake", 10.0),
                rate_rps=limits.pop("rps", 1000.0),
                burst=limits.pop("burst", 1000),
            ),
            clock=clock,
        )
        gate = Gate(
            wallet=MINER,
            hotkey=MINER.ss58_address,
            nonce_store=auth.SqliteNonceStore(tmp_path / f"n{len(runners)}.sqlite", 12.0),
            policy=policy,
            limiter=PriorityLimiter(limits.pop("concurrency", 8), limits.pop("queue", 64)),
            max_body_bytes=limits.pop("max_body", 64 * 1024),
            request_timeout=limits.pop("timeout", 60.0),
            body_timeout=limits.pop("body_timeout", 30.0),
        )
        service = MinerService(
            limits.pop("engine", engine),
            identity=IDENTITY,
            model_name="tiny",
            codec=load_codec(limits.pop("codec_dir", model_dir)),
            max_tokens=32,
            max_logprobs=5,
        )
        metrics = MinerMetrics()
        conn_limits: ConnectionLimits | None = limits.pop("connections", None)
        if conn_limits is None:
            runner = web.AppRunner(build_app(service, gate, metrics))
        else:
            guard = ConnectionGuard(
                conn_limits,
                on_refused=lambda reason: metrics.connections_refused.labels(reason).inc(),
                on_timeout=metrics.header_timeouts.inc,
            )
            runner = GuardedRunner(build_app(service, gate, metrics, guard=guard), guard)
        assert not limits, f"unknown server options {sorted(limits)}"
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        RUNNERS[f"http://127.0.0.1:{port}"] = runner
        return f"http://127.0.0.1:{port}", clock, metrics

    yield start
    for r in runners:
        await r.cleanup()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def body(**kw: Any) -> bytes:
    return json.dumps({"model": "tiny", "prompt": [1, 5, 6, 7], "max_tokens": 4, **kw}).encode()


async def post(
    session: aiohttp.ClientSession,
    base: str,
    data: bytes,
    *,
    signer: Keypair = VALI,
    receiver: str = MINER.ss58_address,
    nonce_ns: int | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    h = (
        headers
        if headers is not None
        else http_auth.sign(
            signer, method="POST", path=PATH, body=data, receiver_ss58=receiver, nonce_ns=nonce_ns
        )
    )
    async with session.post(base + PATH, data=data, headers=h) as r:
        return r.status, dict(r.headers), await r.read()


def openai_client(base: str, signer: Keypair = VALI) -> openai.AsyncOpenAI:
    hook = auth.BtAuthHook(signer, MINER.ss58_address)
    http = httpx.AsyncClient(event_hooks={"request": [hook.async_hook]}, timeout=60)
    return openai.AsyncOpenAI(
        base_url=base + "/v1", api_key="unused", http_client=http, max_retries=0
    )


async def test_openai_client_gets_exact_completion_with_logprobs(
    server: Server, engine: Engine
) -> None:
    base, _, _ = await server()
    client = openai_client(base)
    raw = await client.completions.with_raw_response.create(
        model="tiny",
        prompt=[1, 5, 6, 7],
        max_tokens=6,
        temperature=0,
        logprobs=3,
        extra_body={"subnet": {"task_id": "t-1", "ignore_eos": True}},
    )
    r = raw.parse()
    [ref] = await engine.generate(
        [[1, 5, 6, 7]], SamplingParams(max_tokens=6, temperature=0, top_logprobs=3, ignore_eos=True)
    )
    lp = r.choices[0].logprobs
    assert lp is not None and lp.tokens == [f"token_id:{t}" for t in ref.token_ids.tolist()]
    np.testing.assert_allclose(np.asarray(lp.token_logprobs), ref.sampled_logprobs, rtol=1e-6)
    assert r.model_extra is not None
    ext = r.model_extra["subnet"]
    assert ext["identity"] == IDENTITY and ext["task_id"] == "t-1"
    assert ext["top_k"]["ids"] == ref.top_ids.tolist()
    assert r.usage is not None and r.usage.completion_tokens == 6
    # the validator keeps (request, response) as evidence: the signature checks out
    resp = raw.http_response
    auth.verify_response(
        resp.headers,
        resp.content,
        miner_hotkey=MINER.ss58_address,
        status=200,
        path=PATH,
        request_body=resp.request.content,
        caller=VALI.ss58_address,
        request_nonce=int(resp.request.headers[http_auth.HEADER_NONCE]),
    )
    await client.close()


async def test_openai_client_streams_with_logprobs_and_signature(server: Server) -> None:
    base, _, metrics = await server()
    client = openai_client(base)
    stream = await client.completions.create(
        model="tiny",
        prompt=[1, 5, 6, 7],
        max_tokens=5,
        temperature=0,
        logprobs=2,
        stream=True,
        extra_body={"subnet": {"ignore_eos": True}},
    )
    chunks = [c async for c in stream]
    content = [c for c in chunks if c.choices]
    logprobs = [c.choices[0].logprobs for c in content]
    assert sum(len(lp.tokens or []) for lp in logprobs if lp is not None) == 5
    assert all(lp is not None for lp in logprobs)
    assert content[-1].choices[0].finish_reason == "length"
    last: Any = chunks[-1]  # the signature event: an object the OpenAI types do not know
    assert last.object == "subnet.signature" and not last.choices
    await client.close()

    # the same stream read raw verifies end to end, and reassembles to the same tokens
    hook = auth.BtAuthHook(VALI, MINER.ss58_address)
    async with httpx.AsyncClient(event_hooks={"request": [hook.async_hook]}) as http:
        req_body = body(
            stream=True, logprobs=2, temperature=0, max_tokens=5, subnet={"ignore_eos": True}
        )
        async with http.stream("POST", base + PATH, content=req_body) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            raw = b"".join([b async for b in resp.aiter_raw()])
            nonce = int(resp.request.headers[http_auth.HEADER_NONCE])
    prefix = auth.verify_stream(
        raw,
        miner_hotkey=MINER.ss58_address,
        path=PATH,
        request_body=req_body,
        caller=VALI.ss58_address,
        request_nonce=nonce,
    )
    events = [json.loads(e[6:]) for e in prefix.split(b"\n\n") if e]
    got = protocol.read_completion(events)
    expected = [
        int(t.split(":")[1])
        for c in content
        for t in (c.choices[0].logprobs.tokens or [] if c.choices[0].logprobs else [])
    ]
    assert expected
    assert list(got.token_ids) == expected and got.identity == IDENTITY
    assert b"miner_time_to_first_token_seconds_count 2.0" in metrics.render()


async def test_text_prompt_is_accepted(server: Server) -> None:
    base, _, _ = await server()
    async with aiohttp.ClientSession() as s:
        status, _, out = await post(s, base, body(prompt="reverse the word"))
    assert status == 200
    assert json.loads(out)["usage"]["prompt_tokens"] >= 2


async def test_auth_rejections(server: Server) -> None:
    base, _, metrics = await server()
    data = body()
    async with aiohttp.ClientSession() as s:
        assert (await post(s, base, data, headers={}))[0] == 401
        status, _, out = await post(s, base, data, receiver=VALI2.ss58_address)
        assert status == 403 and json.loads(out)["error"]["code"] == "auth_wrong_receiver"
        stale = time.time_ns() - 60 * 10**9
        status, _, out = await post(s, base, data, nonce_ns=stale)
        assert status == 401 and json.loads(out)["error"]["code"] == "auth_stale"
        h = http_auth.sign(
            VALI, method="POST", path=PATH, body=data, receiver_ss58=MINER.ss58_address
        )
        assert (await post(s, base, data, headers=h))[0] == 200
        status, _, out = await post(s, base, data, headers=h)
        assert status == 401 and json.loads(out)["error"]["code"] == "auth_replayed"
        h = http_auth.sign(
            VALI, method="POST", path=PATH, body=data, receiver_ss58=MINER.ss58_address
        )
        status, headers, out = await post(s, base, body(max_tokens=5), headers=h)
        assert status == 401 and json.loads(out)["error"]["code"] == "auth_bad_signature"
        assert "Traceback" not in out.decode()
        # error responses are signed too (unauthenticated: caller "-")
        auth.verify_response(
            headers,
            out,
            miner_hotkey=MINER.ss58_address,
            status=401,
            path=PATH,
            request_body=body(max_tokens=5),
        )
    text = metrics.render().decode()
    for cause in ("auth_wrong_receiver", "auth_stale", "auth_replayed", "auth_bad_signature"):
        assert f'miner_auth_failures_total{{cause="{cause}"}} 1.0' in text


@pytest.mark.parametrize(
    ("signer", "cause"),
    [(NOPERMIT, "no_validator_permit"), (STRANGER, "not_registered"), (WEAK, "low_stake")],
)
async def test_caller_policy_forbids(server: Server, signer: Keypair, cause: str) -> None:
    base, _, _ = await server()
    async with aiohttp.ClientSession() as s:
        status, _, out = await post(s, base, body(), signer=signer)
    assert status == 403 and json.loads(out)["error"]["code"] == cause


async def test_rate_limit_returns_429_then_recovers(server: Server) -> None:
    base, clock, _ = await server(rps=1.0, burst=3)
    data = body(max_tokens=1)
    async with aiohttp.ClientSession() as s:
        assert [(await post(s, base, data))[0] for _ in range(3)] == [200] * 3
        status, headers, out = await post(s, base, data)
        assert status == 429 and json.loads(out)["error"]["code"] == "rate_limited"
        assert int(headers["Retry-After"]) >= 1
        assert (await post(s, base, data, signer=VALI2))[0] == 200  # per hotkey
        clock.now += 1.0
        assert (await post(s, base, data))[0] == 200


async def test_bad_requests_name_the_field(server: Server) -> None:
    base, _, _ = await server()
    cases = [
        (b"{not json", None),
        (body(max_tokens=33), "max_tokens"),
        (body(logprobs=6), "logprobs"),
        (body(prompt=[1, 10**6]), "prompt"),
        (body(n=2), "n"),
        (b"[]", None),
        # issue 17: these reached the tokenizer or the sampler and came back as 500s
        (body(prompt="\ud800"), "prompt"),
        (body(temperature=1e-300), "temperature"),
        (body(temperature=4.9e-324), "temperature"),
        (body(top_p=4.9e-324), "top_p"),
        (body(top_p=1e-300), "top_p"),
    ]
    async with aiohttp.ClientSession() as s:
        for data, param in cases:
            status, _, out = await post(s, base, data)
            err = json.loads(out)["error"]
            assert status == 400 and err["param"] == param, (data, err)
        async with s.get(base + "/nope") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
        async with s.get(base + PATH) as r:
            assert r.status == 405


async def test_huge_body_gets_413_without_being_read(server: Server) -> None:
    base, _, _ = await server(max_body=64 * 1024)
    port = int(base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {10 * 1024 * 1024}\r\n\r\n".encode()
        + b"{" * 65536
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 30)  # 10 MB never sent
    assert b" 413 " in status_line
    writer.close()
    # chunked bodies (no Content-Length) are cut off as soon as they pass the limit
    async with aiohttp.ClientSession() as s:

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(160):
                yield b" " * 65536

        async with s.post(base + PATH, data=chunks()) as r:
            assert r.status == 413


async def test_a_trickled_body_times_out_with_408(server: Server) -> None:
    """Before any auth: a caller that never finishes its body does not hold the connection."""
    base, _, _ = await server(timeout=1.0)
    port = int(base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: 1000\r\n\r\n{{".encode()
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 30)  # 999 bytes never come
    assert b" 408 " in status_line
    writer.close()


async def test_200_concurrent_requests_fail_only_with_429(server: Server) -> None:
    base, _, metrics = await server(concurrency=4, queue=40)
    callers = [VALI, VALI2]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        results = await asyncio.gather(
            *[post(s, base, body(max_tokens=2, seed=i), signer=callers[i % 2]) for i in range(200)]
        )
    statuses = [r[0] for r in results]
    assert set(statuses) <= {200, 429} and statuses.count(200) >= 44
    for status, headers, out in results:
        if status == 429:
            assert json.loads(out)["error"]["code"] == "saturated" and "Retry-After" in headers
    assert 'miner_requests_total{cause="ok",route="/v1/completions",status="200"}' in (
        metrics.render().decode()
    )


async def test_health_and_metrics(server: Server) -> None:
    base, _, metrics = await server()
    async with aiohttp.ClientSession() as s:
        async with s.get(base + protocol.HEALTH_PATH) as r:
            h = await r.json()
        assert h["identity"] == IDENTITY and h["engine"]["engine"] == "hf"
        assert h["capacity"]["max_concurrency"] == 8 and h["hotkey"] == MINER.ss58_address
        await post(s, base, body())
        # /metrics is not on the public serving port (issue 17): it has a loopback port of its own
        async with s.get(base + protocol.METRICS_PATH) as r:
            assert r.status == 404
        async with (
            serve_metrics(metrics, "127.0.0.1", free_port(), keys="test") as port,
            s.get(f"http://127.0.0.1:{port}/metrics") as r,
        ):
            text = await r.text()
    assert 'miner_caller_requests_total{uid="0"} 1.0' in text
    assert "miner_request_seconds_bucket" in text and "miner_queue_depth" in text


async def test_a_busy_metrics_port_is_one_line_naming_its_keys() -> None:
    """The miner's metrics port already taken (issue 17's "a port in use"): a ConfigError of one
    line naming the config keys, before the miner serves anything; the port stays the other
    process's."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as err:
            async with serve_metrics(
                MinerMetrics(), "127.0.0.1", port, keys="miner.metrics_host/metrics_port"
            ):
                pytest.fail("serve_metrics bound a port another socket holds")
        message = str(err.value)
        assert "\n" not in message and "miner.metrics_host/metrics_port" in message
        assert "address already in use" in message and str(port) in message


# -- live streaming ---------------------------------------------------------------------------


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(e[6:]) for e in raw.split(b"\n\n") if e and e != b"data: [DONE]"]


@pytest.mark.parametrize(
    "sampling", [{"temperature": 0}, {"temperature": 0.9, "seed": 5}], ids=["greedy", "seeded"]
)
async def test_stream_is_live_and_reassembles_to_the_plain_answer(
    server: Server, engine: StreamingEngine, sampling: dict[str, Any]
) -> None:
    base, _, _ = await server()
    req = {"logprobs": 3, "max_tokens": 12, "subnet": {"raw": True}, **sampling}
    hook = auth.BtAuthHook(VALI, MINER.ss58_address)
    async with httpx.AsyncClient(event_hooks={"request": [hook.async_hook]}) as http:
        plain = (await http.post(base + PATH, content=body(**req))).json()
        streamed_body = body(stream=True, **req)
        async with http.stream("POST", base + PATH, content=streamed_body) as resp:
            raw = b"".join([b async for b in resp.aiter_raw()])
            nonce = int(resp.request.headers[http_auth.HEADER_NONCE])
        health = (await http.get(base + protocol.HEALTH_PATH)).json()
    assert health["streaming"] == "live"
    prefix = auth.verify_stream(
        raw,
        miner_hotkey=MINER.ss58_address,
        path=PATH,
        request_body=streamed_body,
        caller=VALI.ss58_address,
        request_nonce=nonce,
    )
    content = sse_events(prefix)
    got, want = protocol.read_completion(content), protocol.read_completion(plain)
    assert got == want  # tokens, raw top-k, finish reason and identity, exactly
    # one SSE event per token: each written as the engine produced it
    assert len(content) == len(want.token_ids) == plain["usage"]["completion_tokens"]
    assert all(len(e["subnet"]["token_ids"]) == 1 for e in content)
    assert "".join(e["choices"][0]["text"] for e in content) == plain["choices"][0]["text"]
    assert [lp for e in content for lp in e["choices"][0]["logprobs"]["token_logprobs"]] == (
        plain["choices"][0]["logprobs"]["token_logprobs"]
    )
    assert content[-1]["usage"] == plain["usage"]


class Gated:
    """The real engine, with its stream held after the first chunk until ``opened`` is set.

    While it is held, the engine has computed exactly one token: whatever the client has by
    then was flushed per token, not buffered to the end.
    """

    def __init__(self, inner: StreamingEngine) -> None:
        self.inner = inner
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()
        self.pulled = 0

    @property
    def info(self) -> Any:
        return self.inner.info

    async def generate(self, prompts: Any, params: SamplingParams) -> list[Completion]:
        return await self.inner.generate(prompts, params)

    async def score(self, prompts: Any, completions: Any, k: int) -> Any:
        return await self.inner.score(prompts, completions, k)

    async def close(self) -> None:
        pass  # the module's engine outlives this wrapper

    async def generate_stream(
        self, prompt: Any, params: SamplingParams
    ) -> AsyncGenerator[Completion, None]:
        try:
            async with contextlib.aclosing(self.inner.generate_stream(prompt, params)) as it:
                async for chunk in it:
                    self.pulled += 1
                    yield chunk
                    if self.pulled == 1:
                        await self.opened.wait()
        finally:
            self.closed.set()


async def _until(cond: Callable[[], bool]) -> None:
    """Wait for a server-side event (never a timing assertion: the bound only stops a hang)."""
    async with asyncio.timeout(60):
        while not cond():
            await asyncio.sleep(0.01)


async def test_disconnect_mid_stream_stops_the_engine_and_frees_the_slot(
    server: Server, engine: StreamingEngine
) -> None:
    gated = Gated(engine)
    base, _, metrics = await server(engine=gated, concurrency=1, queue=0)
    data = body(stream=True, max_tokens=32, subnet={"ignore_eos": True})
    h = http_auth.sign(VALI, method="POST", path=PATH, body=data, receiver_ss58=MINER.ss58_address)
    async with aiohttp.ClientSession() as s:
        resp = await s.post(base + PATH, data=data, headers=h)
        assert resp.status == 200
        first = await resp.content.readuntil(b"\n\n")  # arrives while token 2 is not computed
        assert json.loads(first[6:])["subnet"]["token_ids"] and gated.pulled == 1
        resp.close()  # the caller goes away mid-stream
        # the server saw the disconnect (its handler is still running, held by the engine)
        conns = RUNNERS[base].server.connections  # type: ignore[union-attr]
        await _until(lambda: all(c.transport is None for c in conns))
        gated.opened.set()
        await _until(gated.closed.is_set)
        assert gated.pulled == 2  # the first write after the disconnect stopped the engine
        await _until(lambda: 'status="499"' in metrics.render().decode())
        async with s.get(base + protocol.HEALTH_PATH) as r:
            assert (await r.json())["capacity"]["in_flight"] == 0
        # concurrency 1, no queue: a leaked slot would answer 429 here
        status, _, out = await post(
            s, base, body(stream=True, max_tokens=3, subnet={"ignore_eos": True})
        )
    assert status == 200 and len(sse_events(out)) == 3 + 1  # 3 tokens + the signature
    assert 'cause="client_gone",route="/v1/completions",status="499"' in metrics.render().decode()


# -- chat: /v1/chat/completions and /v1/models ---------------------------------------------

CHAT_PATH = protocol_chat.CHAT_PATH
TURNS = [
    {"role": "system", "content": "You sort letters."},
    {"role": "user", "content": "reverse a b c ="},
]


@pytest.fixture(scope="module")
def chat_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The teacher with a chat template (same weights: the module's engine serves it)."""
    return chat_model(model_dir, tmp_path_factory.mktemp("chat") / "teacher")


async def test_openai_client_chat_plain_is_the_rendered_prompts_completion(
    server: Server, engine: Engine, chat_dir: Path
) -> None:
    base, _, _ = await server(codec_dir=chat_dir)
    client = openai_client(base)
    raw = await client.chat.completions.with_raw_response.create(
        model="tiny",
        messages=TURNS,  # type: ignore[arg-type]
        max_tokens=6,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
        extra_body={"subnet": {"task_id": "c-1", "ignore_eos": True}},
    )
    r = raw.parse()
    tok = ModelTokenizer(chat_dir)
    prompt = tok.encode_chat(parse_messages(TURNS))
    [ref] = await engine.generate(
        [prompt], SamplingParams(max_tokens=6, temperature=0, top_logprobs=3, ignore_eos=True)
    )
    choice = r.choices[0]
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant" and choice.finish_reason == "length"
    assert choice.message.content == tok.decode(ref.token_ids.tolist())
    assert choice.logprobs is not None and choice.logprobs.content is not None
    entries = choice.logprobs.content
    assert [e.token for e in entries] == [f"token_id:{t}" for t in ref.token_ids.tolist()]
    np.testing.assert_allclose([e.logprob for e in entries], ref.sampled_logprobs, rtol=1e-6)
    assert [[int(t.token.split(":")[1]) for t in e.top_logprobs] for e in entries] == (
        ref.top_ids.tolist()
    )
    assert r.usage is not None and r.usage.prompt_tokens == len(prompt)
    assert r.model_extra is not None
    ext = r.model_extra["subnet"]
    assert ext["identity"] == IDENTITY and ext["task_id"] == "c-1"
    assert ext["token_ids"] == ref.token_ids.tolist()
    resp = raw.http_response  # signed like completions: kept as evidence, it verifies
    auth.verify_response(
        resp.headers,
        resp.content,
        miner_hotkey=MINER.ss58_address,
        status=200,
        path=CHAT_PATH,
        request_body=resp.request.content,
        caller=VALI.ss58_address,
        request_nonce=int(resp.request.headers[http_auth.HEADER_NONCE]),
    )
    await client.close()


async def test_openai_client_chat_streams_the_same_answer(server: Server, chat_dir: Path) -> None:
    base, _, _ = await server(codec_dir=chat_dir)
    client = openai_client(base)
    common: dict[str, Any] = {
        "model": "tiny",
        "messages": TURNS,
        "max_tokens": 8,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 2,
        "extra_body": {"subnet": {"ignore_eos": True}},
    }
    plain = await client.chat.completions.create(**common)
    stream = await client.chat.completions.create(stream=True, **common)
    chunks = [c async for c in stream]
    await client.close()
    content = [c for c in chunks if c.choices]
    assert all(c.object == "chat.completion.chunk" for c in content)
    assert content[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in content[1:])
    text = "".join(c.choices[0].delta.content or "" for c in content)
    assert text == plain.choices[0].message.content
    streamed = [e.token for c in content for e in c.choices[0].logprobs.content]
    assert streamed == [e.token for e in plain.choices[0].logprobs.content]
    assert len(streamed) == 8
    assert content[-1].choices[0].finish_reason == "length"
    assert content[-1].usage is not None and content[-1].usage == plain.usage
    last: Any = chunks[-1]  # the signature event
    assert last.object == "subnet.signature" and not last.choices


async def test_chat_rendering_is_byte_identical_on_validator_and_miner(
    server: Server, chat_dir: Path, tmp_path: Path
) -> None:
    """The validator renders a chat dataset row; the miner renders the same turns sent to its
    chat endpoint: same ids, so the same answer as the validator's token-id query."""
    from neurons.validator.prompts import PromptSelector

    rows = tmp_path / "chat.jsonl"
    rows.write_text(json.dumps({"messages": TURNS}) + "\n")
    selector = PromptSelector.load(
        [str(rows)], ("add",), ModelTokenizer(chat_dir), max_prompt_tokens=200
    )
    [validator_ids] = selector.select("0xfeed", 1).token_ids
    service = MinerService(
        load_engine("hf", chat_dir),
        identity=IDENTITY,
        model_name="tiny",
        codec=load_codec(chat_dir),
        max_tokens=32,
        max_logprobs=5,
    )
    chat_req = json.dumps({"messages": TURNS, "max_tokens": 4}).encode()
    miner_ids = list(service.parse_chat(chat_req).completion.prompt_ids)
    assert miner_ids == validator_ids
    assert ModelTokenizer(chat_dir).decode(miner_ids, skip_special_tokens=False) == (
        "<bos>system: You sort letters.\nuser: reverse a b c =\nassistant:"
    )
    await service.engine.close()
    # over the wire: the chat answer is the completion of the validator's ids
    base, _, _ = await server(codec_dir=chat_dir)
    sampling = {"max_tokens": 6, "temperature": 0, "logprobs": 2, "subnet": {"ignore_eos": True}}
    hook = auth.BtAuthHook(VALI, MINER.ss58_address)
    async with httpx.AsyncClient(event_hooks={"request": [hook.async_hook]}) as http:
        chat = await http.post(
            base + CHAT_PATH,
            content=json.dumps(
                {"messages": TURNS, **sampling, "logprobs": True, "top_logprobs": 2}
            ),
        )
        plain = await http.post(base + PATH, content=body(prompt=validator_ids, **sampling))
    assert chat.status_code == plain.status_code == 200, chat.text
    got, want = chat.json(), plain.json()
    assert got["subnet"]["token_ids"] == want["subnet"]["token_ids"]
    assert got["subnet"]["top_k"] == want["subnet"]["top_k"]
    assert got["usage"] == want["usage"]
    assert got["choices"][0]["message"]["content"] == want["choices"][0]["text"]


@pytest.mark.parametrize(
    ("request_fields", "param", "code", "message"),
    [
        (
            {"messages": [{"role": "user", "content": "stop <eos> now"}]},
            "messages",
            "invalid_prompt",
            "special token '<eos>'",
        ),
        (
            {"messages": [{"role": "assistant", "content": "hi"}]},
            "messages",
            "invalid_prompt",
            "last turn",
        ),
        ({"messages": "hi"}, "messages", "invalid_prompt", "non-empty list"),
        (
            {"messages": [{"role": "tool", "content": "4"}]},
            "messages",
            "invalid_prompt",
            "role tool is not supported",
        ),
        ({"tools": [{"type": "function"}]}, "tools", "unsupported", "not supported"),
        ({"top_logprobs": 2}, "top_logprobs", "invalid_request", "needs logprobs: true"),
        (
            {"logprobs": True, "top_logprobs": 9},
            "top_logprobs",
            "invalid_request",
            "between 0 and 5",
        ),
        ({"logprobs": 3}, "logprobs", "invalid_request", "must be a boolean"),
        ({"max_completion_tokens": 0}, "max_tokens", "invalid_request", "between 1 and 32"),
        ({"n": 2}, "n", "unsupported", "n=1"),
    ],
)
async def test_bad_chat_requests_name_the_field(
    server: Server, chat_dir: Path, request_fields: dict, param: str, code: str, message: str
) -> None:
    base, _, _ = await server(codec_dir=chat_dir)
    data = json.dumps({"model": "tiny", "messages": TURNS, **request_fields}).encode()
    h = http_auth.sign(
        VALI, method="POST", path=CHAT_PATH, body=data, receiver_ss58=MINER.ss58_address
    )
    async with aiohttp.ClientSession() as s, s.post(base + CHAT_PATH, data=data, headers=h) as r:
        status, out = r.status, await r.json()
    assert status == 400, out
    assert out["error"]["param"] == param and out["error"]["code"] == code
    assert message in out["error"]["message"]


async def test_chat_needs_a_template_and_a_signature(server: Server) -> None:
    base, _, _ = await server()  # the tiny teacher itself: no chat template
    data = json.dumps({"messages": TURNS}).encode()
    async with aiohttp.ClientSession() as s:
        async with s.post(base + CHAT_PATH, data=data) as r:
            assert r.status == 401
        h = http_auth.sign(
            VALI, method="POST", path=CHAT_PATH, body=data, receiver_ss58=MINER.ss58_address
        )
        async with s.post(base + CHAT_PATH, data=data, headers=h) as r:
            out = await r.json()
    assert r.status == 400 and "no chat template" in out["error"]["message"]
    # a text prompt with special-token text is refused on /v1/completions too
    async with aiohttp.ClientSession() as s:
        status, _, raw = await post(s, base, body(prompt="a <eos> b"))
    err = json.loads(raw)["error"]
    assert status == 400 and err["param"] == "prompt" and err["code"] == "invalid_prompt"


async def test_models_lists_the_served_model(server: Server) -> None:
    base, _, _ = await server()
    client = openai_client(base)
    page = await client.models.list()
    await client.close()
    [m] = page.data
    assert m.id == "tiny" and m.object == "model" and m.owned_by == "subnet-miner"
    assert m.model_extra is not None and m.model_extra["subnet"]["identity"] == IDENTITY


# -- issue 17: hostile connections before auth --------------------------------------------


async def test_a_caller_hanging_up_mid_body_is_a_499_without_a_traceback(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    base, _, metrics = await server()
    port = int(base.rsplit(":", 1)[1])
    caplog.set_level("DEBUG")
    for _ in range(3):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: 1000\r\n\r\n{{".encode()
        )
        await writer.drain()
        writer.close()  # hangs up with 999 body bytes outstanding
    line = 'miner_requests_total{cause="client_gone",route="/v1/completions",status="499"} 3.0'
    await _until(lambda: line in metrics.render().decode())
    text = metrics.render().decode()
    assert 'status="500"' not in text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize("header", [http_auth.HEADER_SIGNATURE, http_auth.HEADER_HOTKEY])
async def test_a_btauth_header_sent_twice_is_refused(server: Server, header: str) -> None:
    """Whichever copy a proxy in front would read, the miner never picks one: 400."""
    base, _, metrics = await server()
    data = body()
    signed = http_auth.sign(
        VALI, method="POST", path=PATH, body=data, receiver_ss58=MINER.ss58_address
    )
    other = http_auth.sign(
        VALI2, method="POST", path=PATH, body=data, receiver_ss58=MINER.ss58_address
    )
    for first, second in ((other[header], signed[header]), (signed[header], other[header])):
        headers = CIMultiDict(signed)
        headers.popall(header)
        headers.add(header, first)
        headers.add(header, second)
        async with (
            aiohttp.ClientSession() as s,
            s.post(base + PATH, data=data, headers=headers) as r,
        ):
            assert r.status == 400, await r.text()
            assert (await r.json())["error"]["code"] == "auth_duplicate_header"
    assert (
        'miner_auth_failures_total{cause="auth_duplicate_header"} 2.0' in metrics.render().decode()
    )


async def _read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes (the bound only stops a hang)."""
    async with asyncio.timeout(60):
        return await reader.read()


async def test_slow_headers_are_cut_off_and_connections_are_capped(server: Server) -> None:
    limits = ConnectionLimits(header_timeout=0.5, max_connections=100, max_per_source=3)
    base, _, metrics = await server(connections=limits)
    port = int(base.rsplit(":", 1)[1])
    trickling = True

    async def trickle(writer: asyncio.StreamWriter) -> None:
        writer.write(f"POST {PATH} HTTP/1.1\r\nHost: x\r\n".encode())
        with contextlib.suppress(ConnectionError):
            while trickling and not writer.is_closing():
                writer.write(b"X-Slow: a\r\n")  # a header line every 50 ms, never the blank one
                await writer.drain()
                await asyncio.sleep(0.05)

    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    tasks = [asyncio.create_task(trickle(w)) for _, w in conns]
    # a fourth from the same source is refused at once; another source is still welcome
    r4, w4 = await asyncio.open_connection("127.0.0.1", port)
    assert (await _read_until_closed(r4)).startswith(b"HTTP/1.1 503 ")
    r5, w5 = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
    w5.write(
        f"GET {protocol.HEALTH_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert (await _read_until_closed(r5)).startswith(b"HTTP/1.1 200 ")
    # the trickling ones are closed with 408 however busily they trickle
    for reader, _ in conns:
        assert (await _read_until_closed(reader)).startswith(b"HTTP/1.1 408 ")
    trickling = False
    await asyncio.gather(*tasks)
    for w in (w4, w5, *(w for _, w in conns)):
        w.close()
    text = metrics.render().decode()
    assert "miner_header_timeouts_total 3.0" in text
    assert 'miner_connections_refused_total{reason="max_per_source"} 1.0' in text
    # their slots are free again; a kept-alive connection idle past the header deadline is not
    # cut (the clock starts at a request's first byte)
    async with aiohttp.ClientSession() as s:
        assert (await post(s, base, body(max_tokens=1)))[0] == 200
        await asyncio.sleep(1.0)
        assert (await post(s, base, body(max_tokens=1)))[0] == 200
    assert "miner_header_timeouts_total 3.0" in metrics.render().decode()


async def test_total_connections_are_capped(server: Server) -> None:
    limits = ConnectionLimits(header_timeout=30.0, max_connections=2, max_per_source=100)
    base, _, metrics = await server(connections=limits)
    port = int(base.rsplit(":", 1)[1])
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.3", 0))
    assert (await _read_until_closed(reader)).startswith(b"HTTP/1.1 503 ")
    writer.close()
    assert 'miner_connections_refused_total{reason="max_connections"} 1.0' in (
        metrics.render().decode()
    )
    for _, w in held:
        w.close()


async def test_a_body_trickled_before_auth_gets_the_short_body_deadline(server: Server) -> None:
    base, _, _ = await server(timeout=60.0, body_timeout=0.5)
    port = int(base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: 1000\r\n\r\n{{".encode()
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 30)  # well before the 60 s timeout
    assert b" 408 " in status_line
    writer.close()
