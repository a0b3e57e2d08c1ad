"""The official ``openai`` client against the gateway, in front of real miners.

Miners are the real miner app on loopback (hf engine, tiny world, ``_validator_kit``), the
gateway the real app (``_gateway_kit``), routing by scores the real validator store wrote. The
answers are checked token for token against the teacher's own greedy answer, so a gateway that
dropped, duplicated or mangled a token fails.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from distill.tiny import TinyWorld
from neurons.localnet.plan import free_port
from neurons.validator.inbox import read_inbox
from subnet.engine import SamplingParams, load_engine
from tests.integration._gateway_kit import (
    MODEL,
    gateway_config,
    running_gateway,
    seed_scores,
    subnet_ext,
)
from tests.integration._validator_kit import make_subnet, running_miners

pytestmark = pytest.mark.slow

CHAT_PROMPT = "add 12 34 ="
TEXT_PROMPT = "sort 3 1 2 ="


def _client(url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60.0)


async def _teacher_says(world: TinyWorld, prompt: str, max_tokens: int) -> str:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(world.teacher / "tokenizer.json"))
    engine = load_engine("hf", world.teacher)
    try:
        [c] = await engine.generate(
            [tok.encode(prompt).ids], SamplingParams(max_tokens=max_tokens, temperature=0.0)
        )
    finally:
        await engine.close()
    return str(tok.decode(c.token_ids.tolist(), skip_special_tokens=True))


async def test_openai_chat_and_completions_plain_and_streamed(tmp_path, tiny):
    sub = make_subnet(tiny, tmp_path)
    cfg = gateway_config(tmp_path, sub.zoo["teacher"])
    seed_scores(cfg, sub, {"teacher": 0.9})  # the only scored miner: every request goes there
    want_chat = await _teacher_says(tiny, CHAT_PROMPT, 8)
    want_text = await _teacher_says(tiny, TEXT_PROMPT, 8)
    async with (
        running_miners(sub, tmp_path, names=("teacher", "student")),
        running_gateway(cfg, sub) as gw,
    ):
        client = _client(gw.url, gw.key())
        models = await client.models.list()
        assert [m.id for m in models.data] == [MODEL]

        chat = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": CHAT_PROMPT}],
            max_tokens=8,
            temperature=0,
        )
        assert chat.object == "chat.completion"
        assert chat.choices[0].message.role == "assistant"
        assert chat.choices[0].message.content == want_chat and want_chat.strip()
        assert chat.choices[0].finish_reason in ("stop", "length")
        assert chat.usage is not None and chat.usage.completion_tokens > 0
        assert subnet_ext(chat)["miners"] == [sub.uids["teacher"]]

        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": CHAT_PROMPT}],
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == want_chat
        assert chunks[0].choices[0].delta.role == "assistant"
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
        assert finishes[-1] in ("stop", "length") and not any(finishes[:-1])
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == chat.usage.completion_tokens

        done = await client.completions.create(
            model=MODEL, prompt=TEXT_PROMPT, max_tokens=8, temperature=0
        )
        assert done.object == "text_completion" and done.choices[0].text == want_text
        streamed = await client.completions.create(
            model=MODEL, prompt=TEXT_PROMPT, max_tokens=8, temperature=0, stream=True
        )
        parts = [c async for c in streamed]
        assert "".join(c.choices[0].text for c in parts) == want_text
        assert parts[-1].choices[0].finish_reason == done.choices[0].finish_reason

        # Every answer was signed by the teacher's miner and handed to the validator's inbox.
        batch = read_inbox(gw.inbox.path, None, 100)
        assert batch is not None and len(batch.records) == 4
        assert {r.uid for r in batch.records} == {sub.uids["teacher"]}
        assert {r.request_id for r in batch.records} >= {chat.id, done.id}
        usage = {u.uid: u for u in gw.keys.usage()}
        assert usage[sub.uids["teacher"]].ok == 4
        assert usage[sub.uids["teacher"]].completion_tokens > 0
        async with aiohttp.ClientSession() as http, http.get(gw.url + "/metrics") as r:
            metrics = await r.text()
        uid = sub.uids["teacher"]
        assert f'gateway_miner_attempts_total{{outcome="ok",uid="{uid}"}} 4.0' in metrics
        assert "gateway_organic_recorded_total 4.0" in metrics
        assert (
            'gateway_requests_total{code="ok",route="/v1/chat/completions",status="200"} 2.0'
            in (metrics)
        )


async def test_bad_requests_are_400_naming_the_field(tmp_path, tiny):
    sub = make_subnet(tiny, tmp_path)
    cfg = gateway_config(tmp_path, sub.zoo["teacher"])
    seed_scores(cfg, sub, {"teacher": 0.9})
    async with running_miners(sub, tmp_path, names=("teacher",)), running_gateway(cfg, sub) as gw:
        client = _client(gw.url, gw.key())
        user: list[Any] = [{"role": "user", "content": CHAT_PROMPT}]
        cases: list[tuple[dict[str, Any], str]] = [
            ({"messages": []}, "messages"),
            ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
            ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
            ({"messages": user, "temperature": 5}, "temperature"),
            ({"messages": user, "max_tokens": 10**6}, "max_tokens"),
            ({"messages": user, "n": 2}, "n"),
            ({"messages": user, "stop": ["\n"]}, "stop"),
            ({"messages": user, "top_p": 0}, "top_p"),
        ]
        for kwargs, param in cases:
            with pytest.raises(openai.BadRequestError) as e:
                await client.chat.completions.create(model=MODEL, **kwargs)
            assert e.value.param == param, (kwargs, e.value.body)
        with pytest.raises(openai.BadRequestError) as e:
            await client.completions.create(model=MODEL, prompt=[10**9])
        assert e.value.param == "prompt"
        with pytest.raises(openai.NotFoundError) as nf:
            await client.chat.completions.create(model="gpt-4", messages=user)
        assert nf.value.param == "model" and nf.value.code == "model_not_found"
        with pytest.raises(openai.AuthenticationError) as au:
            await _client(gw.url, "sk-not-a-key").chat.completions.create(
                model=MODEL, messages=user
            )
        assert au.value.code == "invalid_api_key"
        key = gw.key()
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
            huge = b'{"model": "x", "prompt": "' + b"a" * (2 << 20) + b'"}'
            async with http.post(gw.url + "/v1/completions", data=huge) as r:
                assert r.status == 413 and (await r.json())["error"]["code"] == "body_too_large"
            async with http.post(gw.url + "/v1/chat/completions", data=b"{not json") as r:
                assert r.status == 400 and (await r.json())["error"]["code"] == "malformed_json"
            async with http.get(gw.url + "/v1/nowhere") as r:
                assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
        assert gw.inbox.count() == 0  # nothing reached a miner


async def test_revoked_keys_quotas_and_rate_limits(tmp_path, tiny):
    sub = make_subnet(tiny, tmp_path)
    cfg = gateway_config(tmp_path, sub.zoo["teacher"])
    seed_scores(cfg, sub, {"teacher": 0.9})
    user: list[Any] = [{"role": "user", "content": CHAT_PROMPT}]
    async with running_miners(sub, tmp_path, names=("teacher",)), running_gateway(cfg, sub) as gw:
        # Revocation (by the CLI's code path, in another connection) takes effect at once.
        key = gw.key("revoke-me")
        client = _client(gw.url, key)
        await client.chat.completions.create(model=MODEL, messages=user, max_tokens=4)
        revoked = gw.keys.revoke(gw.keys.lookup(key).prefix)  # type: ignore[union-attr]
        assert not revoked.active
        with pytest.raises(openai.AuthenticationError) as au:
            await client.chat.completions.create(model=MODEL, messages=user, max_tokens=4)
        assert au.value.code == "revoked_api_key" and "revoked" in au.value.message

        # A token quota is never overrun: requests pass while prompt + max_tokens fit.
        quota = 30
        limited = _client(gw.url, gw.key("quota", token_quota=quota))
        served = 0
        with pytest.raises(openai.RateLimitError) as rl:
            for _ in range(10):
                await limited.chat.completions.create(model=MODEL, messages=user, max_tokens=4)
                served += 1
        assert served >= 1
        assert rl.value.code == "quota_exceeded" and "token quota exhausted" in rl.value.message
        [record] = [k for k in gw.keys.list_keys() if k.name == "quota"]
        assert 0 < record.tokens_used <= quota and record.requests == served

        # Rate: a burst of one, then 429 with Retry-After until the bucket refills.
        slow = _client(gw.url, gw.key("slow", rps=0.01, burst=1))
        await slow.chat.completions.create(model=MODEL, messages=user, max_tokens=2)
        with pytest.raises(openai.RateLimitError) as rate:
            await slow.chat.completions.create(model=MODEL, messages=user, max_tokens=2)
        assert rate.value.code == "rate_limited"
        assert int(rate.value.response.headers["Retry-After"]) >= 1


async def test_no_scored_miner_is_503_and_dead_ones_are_502_uncharged(tmp_path, tiny):
    from subnet.chain.network import open_chain
    from tests.integration._validator_kit import HOST, NETUID

    sub = make_subnet(tiny, tmp_path)
    cfg = gateway_config(tmp_path, sub.zoo["teacher"])
    user: list[Any] = [{"role": "user", "content": CHAT_PROMPT}]
    async with running_gateway(cfg, sub) as gw:  # nobody scored yet
        client = _client(gw.url, gw.key())
        with pytest.raises(openai.InternalServerError) as e:
            await client.chat.completions.create(model=MODEL, messages=user)
        assert e.value.status_code == 503 and e.value.code == "no_miners"
    async with open_chain(sub.network) as chain:  # an endpoint where nothing listens
        await chain.serve(NETUID, sub.wallets["student"], HOST, free_port(HOST))
    seed_scores(cfg, sub, {"student": 0.9})
    async with running_gateway(cfg, sub) as gw:
        key = gw.key("dead-end", token_quota=1000)
        with pytest.raises(openai.InternalServerError) as e:
            await _client(gw.url, key).chat.completions.create(model=MODEL, messages=user)
        assert e.value.status_code == 502 and e.value.code == "miners_failed"
        [record] = [k for k in gw.keys.list_keys() if k.name == "dead-end"]
        assert record.tokens_used == 0  # nothing reached the user: nothing charged
        [usage] = gw.keys.usage()
        assert usage.uid == sub.uids["student"] and usage.ok == 0
