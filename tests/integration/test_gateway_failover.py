"""Failover: the miner streaming an answer is killed (SIGKILL) mid-stream; the user's stream
goes on from the next miner, without a token twice or a token lost.

Both miners are real miner apps in processes of their own (``_drip_miner.py``: one token every
0.3 s), serving the teacher, so the answer the user reads must equal the teacher's own greedy
answer: the second miner continues from the prompt plus exactly the tokens the user already has.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import openai
import pytest

from neurons.localnet.plan import free_port, healthy
from neurons.validator.inbox import read_inbox
from subnet.chain.network import open_chain
from subnet.engine import SamplingParams, load_engine
from subnet.wallets import hotkey_address
from tests.integration._gateway_kit import (
    MODEL,
    gateway_config,
    running_gateway,
    seed_scores,
    subnet_ext,
)
from tests.integration._validator_kit import HOST, NETUID, make_subnet

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
PROMPT = "sort 9 8 7 6 5 4 ="  # the teacher answers in 13 tokens
DELAY = 0.3


def _start(
    model: Path, wallets: Path, name: str, port: int, caller: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tests" / "integration" / "_drip_miner.py"),
            str(model),
            str(wallets),
            name,
            str(port),
            caller,
            str(DELAY),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _wait_healthy(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while not await asyncio.to_thread(healthy, port):
        assert proc.poll() is None, f"the miner on port {port} exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"the miner on port {port} never served"
        await asyncio.sleep(0.5)


async def _gateway_process_drains_on_sigterm(sub, tmp_path: Path, expected: str) -> None:
    """``subnet gateway`` as a process: a stream in flight when SIGTERM arrives is finished
    (then exit 0); a second gateway on the same port stops with one line."""
    port = free_port("127.0.0.1")
    argv = [
        sys.executable,
        "-m",
        "subnet.cli",
        "gateway",
        "--teacher",
        str(sub.zoo["teacher"]),
        "--network",
        sub.network,
        "--netuid",
        str(NETUID),
        "--wallet.name",
        "vali",
        "--wallet.hotkey",
        "default",
        "--wallet.path",
        str(tmp_path / "wallets"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--state-dir",
        str(tmp_path / "gw2"),
        "--validator-state-dir",
        str(tmp_path / "vs"),
        "--set",
        "gateway.refresh_interval=1",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    add = subprocess.run(
        [*argv[:4], "keys", "add", "--name", "p", "--json", "--state-dir", str(tmp_path / "gw2")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert add.returncode == 0, add.stderr
    key = json.loads(add.stdout)["key"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while True:
                assert proc.poll() is None and time.monotonic() < deadline, "gateway not ready"
                try:
                    async with http.get(url + "/health") as r:
                        if r.status == 200 and (await r.json())["eligible_miners"]:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.5)
        clash = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        assert clash.returncode == 2
        assert (
            clash.stderr.strip()
            .splitlines()[-1]
            .startswith(f"subnet gateway: error: cannot listen on 127.0.0.1:{port}")
        ), clash.stderr
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=32,
            temperature=0,
            stream=True,
        )
        text = []
        async for chunk in stream:
            if chunk.choices:
                text.append(chunk.choices[0].delta.content or "")
            if len(text) == 2:
                proc.send_signal(signal.SIGTERM)
        assert "".join(text) == expected
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


async def test_a_miner_killed_mid_stream_is_continued_by_the_next(tmp_path, tiny):
    from tokenizers import Tokenizer

    sub = make_subnet(tiny, tmp_path)
    vali = hotkey_address(sub.wallets["vali"])
    tok = Tokenizer.from_file(str(tiny.teacher / "tokenizer.json"))
    teacher = load_engine("hf", tiny.teacher)
    try:
        [want] = await teacher.generate(
            [tok.encode(PROMPT).ids], SamplingParams(max_tokens=32, temperature=0.0)
        )
    finally:
        await teacher.close()
    expected = tok.decode(want.token_ids.tolist(), skip_special_tokens=True)
    assert len(want.token_ids) >= 8

    ports = {"teacher": free_port(HOST), "student": free_port(HOST)}
    procs = {
        n: _start(tiny.teacher, tmp_path / "wallets", n, ports[n], vali)
        for n in ("teacher", "student")
    }
    try:
        for name, proc in procs.items():
            await _wait_healthy(ports[name], proc)
        async with open_chain(sub.network) as chain:
            for name, port in ports.items():
                await chain.serve(NETUID, sub.wallets[name], HOST, port)
        # "teacher" has the higher EMA and top_n is 1: it is always asked first.
        cfg = gateway_config(tmp_path, tiny.teacher, **{"gateway.top_n": 1})
        seed_scores(cfg, sub, {"teacher": 0.9, "student": 0.5})
        first, second = sub.uids["teacher"], sub.uids["student"]
        async with running_gateway(cfg, sub) as gw:
            client = openai.AsyncOpenAI(
                base_url=gw.url + "/v1", api_key=gw.key(), max_retries=0, timeout=60.0
            )
            stream = await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": PROMPT}],
                max_tokens=32,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
            text, miners, killed_after, rid = [], [], None, ""
            async for chunk in stream:
                rid = chunk.id
                if not chunk.choices:
                    usage = chunk.usage
                    continue
                text.append(chunk.choices[0].delta.content or "")
                miners.append(subnet_ext(chunk).get("miner"))
                if killed_after is None and miners.count(first) == 2:
                    procs["teacher"].send_signal(signal.SIGKILL)  # no goodbye on the socket
                    killed_after = "".join(text)
            assert killed_after is not None, "the stream ended before the kill"
            assert procs["teacher"].wait(timeout=10) == -signal.SIGKILL
            assert "".join(text) == expected, (killed_after, text)
            assert miners[0] == first and miners[-1] == second  # it moved, once
            assert miners == sorted(miners, key=lambda u: u == second)
            assert usage is not None and usage.completion_tokens == len(want.token_ids)
            # Usage per miner: the killed attempt failed with what it had streamed, the
            # continuation completed the rest.
            attempts = gw.keys.attempts(rid)
            assert [(a.uid, a.outcome) for a in attempts] == [(first, "http_error"), (second, "ok")]
            assert sum(a.completion_tokens for a in attempts) == len(want.token_ids)
            # Only the complete, signed continuation is handed to the validator.
            batch = read_inbox(gw.inbox.path, None, 10)
            assert batch is not None and [r.uid for r in batch.records] == [second]
            # After the failure the dead miner is tried last; the next request goes round it.
            again = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": PROMPT}], max_tokens=32
            )
            assert subnet_ext(again)["miners"] == [second]
        # The same, from a real `subnet gateway` process: it drains on SIGTERM.
        await _gateway_process_drains_on_sigterm(sub, tmp_path, expected)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
