"""The load generator: a separate process that sends signed completion requests to a miner at a
fixed concurrency and reports throughput and per-request latency.

Runs in its own (spawned) process so its work is not on the server's event loop. Each level's
requests are signed before the clock starts (btauth/1 costs the client, not the layer under
test); the first response of a level is fully checked (signature, SSE framing, token count) and
the rest counted by their events, so the client stays cheap next to the server.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Level:
    concurrency: int
    requests: int
    stream: bool
    max_tokens: int
    k: int
    prompt_len: int
    vocab: int


def bodies(level: Level, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [
        json.dumps(
            {
                "model": "bench",
                "prompt": [
                    1,
                    *(rng.randrange(3, level.vocab) for _ in range(level.prompt_len - 1)),
                ],
                "max_tokens": level.max_tokens,
                "seed": 0,
                "logprobs": level.k,
                "stream": level.stream,
                "subnet": {"ignore_eos": True},
            }
        ).encode()
        for _ in range(level.requests)
    ]


async def run_level(
    url: str, miner_ss58: str, vali: Any, level: Level, seed: int
) -> dict[str, Any]:
    import aiohttp
    from bittensor import http_auth

    from subnet import auth, protocol

    path = protocol.COMPLETIONS_PATH
    signed = [
        (b, http_auth.sign(vali, method="POST", path=path, body=b, receiver_ss58=miner_ss58))
        for b in bodies(level, seed)
    ]
    latencies: list[float] = []
    tokens = errors = nbytes = 0
    checked = False

    async def one(s: aiohttp.ClientSession, body: bytes, headers: dict[str, str]) -> None:
        nonlocal tokens, errors, nbytes, checked
        t0 = time.perf_counter()
        async with s.post(url + path, data=body, headers=headers) as r:
            raw = await r.read()
            status, resp_headers = r.status, r.headers
        latencies.append(time.perf_counter() - t0)
        nbytes += len(raw)
        if status != 200:
            errors += 1
            return
        if not checked:  # the whole chain once per level: signature, framing, tokens
            checked = True
            caller, nonce = vali.ss58_address, int(headers["X-Bittensor-Nonce"])
            if level.stream:
                prefix = auth.verify_stream(
                    raw,
                    miner_hotkey=miner_ss58,
                    path=path,
                    request_body=body,
                    caller=caller,
                    request_nonce=nonce,
                )
                events = [json.loads(e[6:]) for e in prefix.split(b"\n\n") if e]
                got = len(protocol.read_completion(events).token_ids)
            else:
                auth.verify_response(
                    resp_headers,
                    raw,
                    miner_hotkey=miner_ss58,
                    status=200,
                    path=path,
                    request_body=body,
                    caller=caller,
                    request_nonce=nonce,
                )
                got = len(json.loads(raw)["subnet"]["token_ids"])
            if got != level.max_tokens:
                raise RuntimeError(f"expected {level.max_tokens} tokens, got {got}")
        tokens += level.max_tokens

    queue = list(signed)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:

        async def worker() -> None:
            while queue:
                body, headers = queue.pop()
                await one(s, body, headers)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(level.concurrency)))
        seconds = time.perf_counter() - t0
    lat = np.asarray(latencies)
    return {
        "concurrency": level.concurrency,
        "stream": level.stream,
        "requests": len(latencies) - errors,
        "errors": errors,
        "seconds": seconds,
        "rps": (len(latencies) - errors) / seconds,
        "tokens_per_s": tokens / seconds,
        "latency_p50_ms": float(np.percentile(lat, 50)) * 1e3,
        "latency_p99_ms": float(np.percentile(lat, 99)) * 1e3,
        "bytes_per_request": nbytes / max(len(latencies), 1),
    }


def client_main(url: str, miner_ss58: str, vali_uri: str, conn: Any) -> None:
    """Child process: run each :class:`Level` received on ``conn``, send back its results;
    ``None`` ends it. A warm-up request precedes each level (connections, first signature)."""
    from bittensor.sp_core import Keypair

    vali = Keypair.create_from_uri(vali_uri)
    seed = 0
    while (level := conn.recv()) is not None:
        seed += 1
        warm = Level(1, 2, level.stream, level.max_tokens, level.k, level.prompt_len, level.vocab)
        try:
            asyncio.run(run_level(url, miner_ss58, vali, warm, -seed))
            conn.send(("started", None))
            conn.send(("done", asyncio.run(run_level(url, miner_ss58, vali, level, seed))))
        except Exception as e:  # report, do not hang the server side
            conn.send(("error", f"{type(e).__name__}: {e}"))
    conn.close()
