"""The miner's HTTP API over the real vLLM engine (CPU build here): the openai client gets the
same tokens and raw distributions the engine produces, plain and streamed, signed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import numpy as np
import openai
import pytest
import pytest_asyncio
from aiohttp import web
from bittensor import http_auth
from bittensor.sp_core import Keypair

from distill.tiny import TinyWorld
from neurons.miner.app import Gate, build_app
from neurons.miner.policy import (
    CallerInfo,
    CallerPolicy,
    Directory,
    PolicyLimits,
    PriorityLimiter,
)
from neurons.miner.serving import MinerService, load_codec
from subnet import auth, protocol
from subnet.engine import Engine, load_engine
from subnet.engine.types import SamplingParams
from subnet.metrics import MinerMetrics

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
MINER = Keypair.create_from_uri("//MinerVllm")
VALI = Keypair.create_from_uri("//ValiVllm")
PATH = protocol.COMPLETIONS_PATH


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(tiny: TinyWorld) -> AsyncIterator[Engine]:
    e = load_engine("vllm", tiny.teacher)
    yield e
    await e.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def base(
    engine: Engine, tiny: TinyWorld, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    teacher = tiny.teacher
    gate = Gate(
        wallet=MINER,
        hotkey=MINER.ss58_address,
        nonce_store=auth.SqliteNonceStore(tmp_path_factory.mktemp("n") / "n.sqlite", 12.0),
        policy=CallerPolicy(
            Directory({VALI.ss58_address: CallerInfo(0, 100.0, True)}),
            PolicyLimits(rate_rps=1000, burst=1000),
        ),
        limiter=PriorityLimiter(32, 64),
    )
    service = MinerService(
        engine,
        identity="v1:" + "0" * 64 + ":tiny:vllm",
        model_name="tiny",
        codec=load_codec(teacher),
        max_tokens=32,
        max_logprobs=5,
    )
    runner = web.AppRunner(build_app(service, gate, MinerMetrics()))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def client(base: str) -> openai.AsyncOpenAI:
    hook = auth.BtAuthHook(VALI, MINER.ss58_address)
    return openai.AsyncOpenAI(
        base_url=base + "/v1",
        api_key="unused",
        max_retries=0,
        http_client=httpx.AsyncClient(event_hooks={"request": [hook.async_hook]}, timeout=120),
    )


async def test_vllm_completion_matches_the_engine_and_is_signed(base: str, engine: Engine) -> None:
    c = client(base)
    prompt = [1, *range(10, 20)]
    raw = await c.completions.with_raw_response.create(
        model="tiny",
        prompt=prompt,
        max_tokens=8,
        temperature=0,
        logprobs=5,
        extra_body={"subnet": {"ignore_eos": True}},
    )
    r = raw.parse()
    [ref] = await engine.generate(
        [prompt], SamplingParams(max_tokens=8, temperature=0, top_logprobs=5, ignore_eos=True)
    )
    assert r.model_extra is not None
    ext = r.model_extra["subnet"]
    assert ext["token_ids"] == ref.token_ids.tolist()
    assert ext["top_k"]["ids"] == ref.top_ids.tolist()
    np.testing.assert_allclose(ext["top_k"]["logprobs"], ref.top_logprobs, atol=1e-5)
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

    stream = await c.completions.create(
        model="tiny",
        prompt=prompt,
        max_tokens=8,
        temperature=0,
        logprobs=5,
        stream=True,
        extra_body={"subnet": {"ignore_eos": True}},
    )
    chunks = [json.loads(ch.model_dump_json()) async for ch in stream]
    got = protocol.read_completion(chunks)
    assert list(got.token_ids) == ref.token_ids.tolist() and got.finish_reason == "length"
    assert chunks[-1]["object"] == protocol.SIGNATURE_OBJECT
    await c.close()
