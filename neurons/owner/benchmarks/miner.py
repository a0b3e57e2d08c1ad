"""Miner HTTP layer: what it sustains on its own, and what it costs next to a real engine.

    subnet bench miner [--quick] [--concurrency 1,32,256] [--engine zero|hf|vllm] ...

``--engine zero`` (default): the production app (btauth/1 verify, SQLite replay store, caller
policy, stake-ordered slots, JSON/SSE, response signing) serves a zero-cost engine that hands
out precomputed tokens at once, so only the layer's own work is measured. A separate client
process (signing requests beforehand, checking one response per level in full) drives it at each
concurrency. Per level: requests/s and streamed tokens/s (wall clock: client and server share
the machine's cores), per-request latency p50/p99 (all of it is added latency: the engine costs
nothing), the server's CPU time per request (what a busy shared machine inflates least; its
inverse is the layer's capacity per core), the server's event-loop lag and peak RSS.

The ratio compares the layer's sustained streamed token rate with a public figure for one GPU
serving a small model with vLLM: J. Musgrave, "vLLM throughput-latency sweep on NVIDIA A100"
(https://johnmusgrave.com/p/vllm-throughput-latency-sweep-on; vLLM 0.23, one A100 40GB,
Llama-3.1-8B-Instruct BF16, 1024-token prompts, 128 output tokens): about 75 tokens/s per stream
at concurrency 1 and 6.6x that (~495 tokens/s) at concurrency 8, the knee the author runs
production at. ``--gpu-tps`` sets the figure compared against (default 495).

``--engine hf|vllm`` instead compares the HTTP side with the same engine called directly
(``engine.generate`` in the server process), level by level: the layer's share of a real
engine's time (what ``scripts/gpu_bench.sh`` runs on a GPU).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neurons.owner.benchkit.load_client import Level, client_main
from neurons.owner.benchkit.loopwatch import LoopWatch
from neurons.owner.benchkit.miner_server import MINER_URI, VALI_URI, Served, serve_miner

GPU_TPS = 495.0  # the cited figure (see the module docstring)


class Client:
    """The load-generator process and its pipe."""

    def __init__(self, url: str, miner_ss58: str) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=client_main, args=(url, miner_ss58, VALI_URI, child))
        self.proc.start()
        child.close()  # ours is closed, so the client dying reads as EOF, not a hang

    async def recv(self) -> Any:
        try:
            kind, value = await asyncio.to_thread(self.conn.recv)
        except EOFError:
            raise SystemExit("the load generator exited unexpectedly") from None
        if kind == "error":
            raise SystemExit(f"load generator failed: {value}")
        return value

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(timeout=30)


async def http_level(served: Served, client: Client, level: Level) -> dict[str, Any]:
    """One level through the app; adds the server's CPU per request and loop lag."""
    client.conn.send(level)
    await client.recv()  # "started": warm-up done, the level's bodies are being signed
    watch = LoopWatch()
    watch.start()
    cpu0 = time.process_time()
    row: dict[str, Any] = await client.recv()
    cpu = time.process_time() - cpu0
    row |= await watch.stop()
    if row["errors"]:
        raise SystemExit(f"{row['errors']} requests failed at concurrency {level.concurrency}")
    row["server_cpu_ms_per_request"] = cpu / row["requests"] * 1e3
    row["capacity_rps_per_core"] = row["requests"] / cpu if cpu > 0 else float("inf")
    row["capacity_tps_per_core"] = row["capacity_rps_per_core"] * level.max_tokens
    return row


async def raw_level(engine: Any, level: Level) -> float:
    """Tokens/s of the same load sent to ``engine.generate`` directly (no HTTP)."""
    from neurons.owner.benchkit.load_client import bodies
    from subnet.engine import SamplingParams

    params = SamplingParams(
        max_tokens=level.max_tokens, top_logprobs=level.k, ignore_eos=True, seed=0
    )
    prompts = [json.loads(b)["prompt"] for b in bodies(level, 10_000 + level.concurrency)]
    tokens = 0

    async def worker() -> None:
        nonlocal tokens
        while prompts:
            [c] = await engine.generate([prompts.pop()], params)
            tokens += len(c.token_ids)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(level.concurrency)))
    return tokens / (time.perf_counter() - t0)


async def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    from bittensor.sp_core import Keypair

    from neurons.owner.benchkit.zero_engine import ZeroCostEngine
    from subnet.engine import Engine, load_engine

    levels = [int(c) for c in args.concurrency.split(",")]
    engine: Engine
    codec = None
    if args.engine == "zero":
        engine = ZeroCostEngine(max_tokens=args.max_tokens, k=args.k)
    else:
        from neurons.miner.serving import load_codec

        model = Path(args.model) if args.model else _tiny_teacher()
        engine = load_engine(args.engine, model, max_top_logprobs=max(args.k, 1))
        codec = load_codec(model)
    servers = {"threads": False, "inline": True} if args.compare_inline else {"threads": False}
    served: dict[str, Served] = {}
    clients: dict[str, Client] = {}
    miner_ss58 = Keypair.create_from_uri(MINER_URI).ss58_address
    rows = []
    try:
        for name, inline in servers.items():
            served[name] = await serve_miner(
                engine,
                max_tokens=args.max_tokens,
                k=args.k,
                capacity=max(levels),
                codec=codec,
                auth_max_age=300.0,
                inline=inline,
            )
            clients[name] = Client(served[name].url, miner_ss58)
        for stream in (True,) if args.quick else (True, False):
            for c in levels:
                n = max(args.requests_min, args.requests_per_worker * c)
                level = Level(
                    c, n, stream, args.max_tokens, args.k, args.prompt_len, engine.info.vocab_size
                )
                raw_tps = await raw_level(engine, level) if args.engine != "zero" else None
                for name in servers:  # side by side: the gates alternate level by level
                    row = await http_level(served[name], clients[name], level)
                    row["gate"] = name
                    if raw_tps is not None:
                        row["raw_tps"] = raw_tps
                        row["http_over_raw"] = row["tokens_per_s"] / raw_tps
                    rows.append(row)
                    _print_row(row)
    finally:
        for client in clients.values():
            client.close()
        for s in served.values():
            await s.close()
        await engine.close()
    return rows


def _print_row(r: dict[str, Any]) -> None:
    extra = (
        f"  raw {r['raw_tps']:8.0f} tok/s  http/raw {r['http_over_raw']:.3f}"
        if "raw_tps" in r
        else ""
    )
    gate = "" if r["gate"] == "threads" else f" [{r['gate']}]"
    print(
        f"{'sse ' if r['stream'] else 'json'} c={r['concurrency']:<4d}{gate}"
        f" {r['rps']:7.1f} req/s {r['tokens_per_s']:9.0f} tok/s"
        f"  p50 {r['latency_p50_ms']:7.2f} ms p99 {r['latency_p99_ms']:7.2f} ms"
        f"  server {r['server_cpu_ms_per_request']:6.2f} ms CPU/req"
        f" ({r['capacity_tps_per_core']:8.0f} tok/s per core)"
        f"  loop lag p99 {r['loop_lag_p99_ms']:5.2f} max {r['loop_lag_max_ms']:6.2f} ms"
        f"  rss {r['peak_rss_mb']:5.0f} MB{extra}",
        flush=True,
    )


def _tiny_teacher() -> Path:
    from distill.tiny import build_tiny_world

    return build_tiny_world().teacher


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="subnet bench miner", description=__doc__.split("\n")[0])
    p.add_argument("--engine", default="zero", choices=("zero", "vllm", "hf"))
    p.add_argument("--model", default=None, help="model folder for hf/vllm (default: tiny teacher)")
    p.add_argument("--concurrency", default="1,32,256")
    p.add_argument("--requests-per-worker", type=int, default=4)
    p.add_argument("--requests-min", type=int, default=64, help="at least this many per level")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--gpu-tps", type=float, default=GPU_TPS, help="GPU token rate to compare")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    p.add_argument("--quick", action="store_true", help="streamed only, fewer requests (< 2 min)")
    p.add_argument(
        "--compare-inline",
        action="store_true",
        help="also serve with btauth and signing inline on the event loop (the old gate)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.requests_per_worker, args.requests_min = 2, 32
    rows = asyncio.run(bench(args))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    sse = [r for r in rows if r["stream"] and r["gate"] == "threads"]
    best = max(sse, key=lambda r: r["tokens_per_s"])
    if args.engine == "zero":
        print(
            f"miner layer sustains {best['tokens_per_s']:.0f} streamed tok/s"
            f" (c={best['concurrency']}, wall, client on the same cores;"
            f" {best['capacity_tps_per_core']:.0f} tok/s per server core)"
            f" = {best['tokens_per_s'] / args.gpu_tps:.1f}x the GPU figure ({args.gpu_tps:g} tok/s)"
        )
    else:
        worst = min(sse, key=lambda r: r["http_over_raw"])
        print(
            f"HTTP / raw engine tokens/s: {worst['http_over_raw']:.3f} at worst"
            f" (c={worst['concurrency']}, {args.engine})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
