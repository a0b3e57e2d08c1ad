"""Miner endpoint vs raw engine: the same load at several concurrencies, tokens/s and the ratio.

    subnet bench miner [--engine vllm|hf] [--model PATH] [--concurrency 1,8,32]
                                  [--requests-per-worker 4] [--max-tokens 64] [--k 20] [--stream]

One process holds the engine and the miner app (loopback, btauth/1, caller policy, signed
responses, the production code path). The raw side calls ``engine.generate`` from that process;
the HTTP side is driven from a separate client process (signing each request, verifying each
response signature) so client work does not run on the server's event loop. Every request asks
for ``--max-tokens`` tokens with ``ignore_eos``, so both sides generate identical token counts.
Levels alternate raw/HTTP so drift on a shared machine hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MINER_URI, VALI_URI = "//BenchMiner", "//BenchVali"


def make_prompts(n: int, vocab: int, length: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[1, *(rng.randrange(3, vocab) for _ in range(length - 1))] for _ in range(n)]


async def raw_load(engine: Any, prompts: list[list[int]], concurrency: int, params: Any) -> int:
    queue = list(prompts)
    tokens = 0

    async def worker() -> None:
        nonlocal tokens
        while queue:
            p = queue.pop()
            [c] = await engine.generate([p], params)
            tokens += len(c.token_ids)

    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return tokens


def client_process(
    url: str, bodies: list[bytes], concurrency: int, stream: bool, conn: Any
) -> None:
    """Child process: send every body with ``concurrency`` workers; report tokens and time."""
    import aiohttp
    from bittensor import http_auth
    from bittensor.sp_core import Keypair

    from subnet import auth, protocol

    vali, miner = Keypair.create_from_uri(VALI_URI), Keypair.create_from_uri(MINER_URI)
    path = protocol.COMPLETIONS_PATH

    async def go() -> tuple[int, float, int]:
        queue: list[bytes] = []
        tokens, errors = 0, 0
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:

            async def worker() -> None:
                nonlocal tokens, errors
                while queue:
                    body = queue.pop()
                    h = http_auth.sign(
                        vali, method="POST", path=path, body=body, receiver_ss58=miner.ss58_address
                    )
                    async with s.post(url + path, data=body, headers=h) as r:
                        raw = await r.read()
                        if r.status != 200:
                            errors += 1
                            continue
                        if stream:
                            prefix = auth.verify_stream(
                                raw, miner_hotkey=miner.ss58_address, path=path, request_body=body
                            )
                            events = [json.loads(e[6:]) for e in prefix.split(b"\n\n") if e]
                            tokens += len(protocol.read_completion(events).token_ids)
                        else:
                            auth.verify_response(
                                r.headers,
                                raw,
                                miner_hotkey=miner.ss58_address,
                                status=200,
                                path=path,
                                request_body=body,
                            )
                            tokens += len(json.loads(raw)["subnet"]["token_ids"])

            queue.append(bodies[0])
            await worker()  # warm up: connection, first signature; not counted
            tokens = 0
            queue.extend(bodies)
            t0 = time.perf_counter()
            await asyncio.gather(*[worker() for _ in range(concurrency)])
            return tokens, time.perf_counter() - t0, errors

    conn.send(asyncio.run(go()))
    conn.close()


def http_load(url: str, bodies: list[bytes], concurrency: int, stream: bool) -> tuple[int, float]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=client_process, args=(url, bodies, concurrency, stream, child))
    proc.start()
    tokens, seconds, errors = parent.recv()
    proc.join()
    if errors:
        raise SystemExit(f"{errors} HTTP requests failed at concurrency {concurrency}")
    return tokens, seconds


async def bench(args: argparse.Namespace) -> list[dict[str, float]]:
    from aiohttp import web
    from bittensor.sp_core import Keypair

    from neurons.miner.app import Gate, build_app
    from neurons.miner.policy import (
        CallerInfo,
        CallerPolicy,
        Directory,
        PolicyLimits,
        PriorityLimiter,
    )
    from neurons.miner.serving import MinerService, load_codec
    from subnet.auth import SqliteNonceStore
    from subnet.engine import load_engine
    from subnet.engine.types import SamplingParams
    from subnet.metrics import MinerMetrics

    model = Path(args.model) if args.model else _tiny_teacher()
    engine = load_engine(args.engine, model, max_top_logprobs=max(args.k, 1))
    miner, vali = Keypair.create_from_uri(MINER_URI), Keypair.create_from_uri(VALI_URI)
    levels = [int(c) for c in args.concurrency.split(",")]
    gate = Gate(
        wallet=miner,
        hotkey=miner.ss58_address,
        nonce_store=SqliteNonceStore(Path(tempfile.mkdtemp()) / "nonces.sqlite", 30.0),
        policy=CallerPolicy(
            Directory({vali.ss58_address: CallerInfo(0, 1.0, True)}),
            PolicyLimits(rate_rps=1e6, burst=10**6),
        ),
        limiter=PriorityLimiter(max(levels), 4 * max(levels)),
        request_timeout=600.0,
    )
    service = MinerService(
        engine,
        identity="v1:" + "0" * 64 + ":bench:local",
        model_name="bench",
        codec=load_codec(model),
        max_tokens=args.max_tokens,
        max_logprobs=args.k,
    )
    runner = web.AppRunner(build_app(service, gate, MinerMetrics()), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    params = SamplingParams(
        max_tokens=args.max_tokens, temperature=1.0, top_logprobs=args.k, ignore_eos=True, seed=0
    )
    vocab = engine.info.vocab_size
    await raw_load(engine, make_prompts(2, vocab, args.prompt_len, 99), 2, params)  # warm up
    rows = []
    try:
        for c in levels:
            prompts = make_prompts(c * args.requests_per_worker, vocab, args.prompt_len, c)
            bodies = [
                json.dumps(
                    {
                        "model": "bench",
                        "prompt": p,
                        "max_tokens": args.max_tokens,
                        "seed": 0,
                        "logprobs": args.k,
                        "stream": args.stream,
                        "subnet": {"ignore_eos": True},
                    }
                ).encode()
                for p in prompts
            ]
            t0 = time.perf_counter()
            raw_tokens = await raw_load(engine, prompts, c, params)
            raw_s = time.perf_counter() - t0
            http_tokens, http_s = await asyncio.to_thread(http_load, url, bodies, c, args.stream)
            row = {
                "concurrency": c,
                "raw_tps": raw_tokens / raw_s,
                "http_tps": http_tokens / http_s,
                "raw_tokens": raw_tokens,
                "http_tokens": http_tokens,
            }
            row["ratio"] = row["http_tps"] / row["raw_tps"]
            rows.append(row)
            print(
                f"c={c:3d}  raw {row['raw_tps']:9.1f} tok/s  http {row['http_tps']:9.1f} tok/s"
                f"  ratio {row['ratio']:.3f}",
                flush=True,
            )
    finally:
        await runner.cleanup()
        await engine.close()
    return rows


def _tiny_teacher() -> Path:
    from distill.tiny import build_tiny_world

    return build_tiny_world().teacher


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="subnet bench miner", description=__doc__.split("\n")[0])
    p.add_argument("--engine", default="vllm", choices=("vllm", "hf"))
    p.add_argument("--model", default=None, help="model folder (default: the tiny teacher)")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--requests-per-worker", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--stream", action="store_true", help="HTTP side uses SSE")
    args = p.parse_args(argv)
    rows = asyncio.run(bench(args))
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
