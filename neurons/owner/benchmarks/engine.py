"""Engine throughput: tokens/s of ``generate`` and ``score``, vLLM vs transformers, batch 1 and 16.

Both engines load the same model (the tiny world's teacher by default) in one process and run
the same requests: ``generate`` is greedy with ``ignore_eos`` (every row produces exactly
``--max-tokens`` tokens) and reports the raw top-k; ``score`` teacher-forces those completions
with the same k. Each cell is the best of ``--repeats`` timed runs after one warm-up run; the
ratio vLLM/transformers is taken from cells measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from subnet.engine import Engine, SamplingParams, load_engine


async def _best_of(repeats: int, run: Callable[[], Awaitable[int]]) -> float:
    """Best tokens/s over ``repeats`` runs, after one warm-up (first-call allocations)."""
    await run()
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        tokens = await run()
        best = max(best, tokens / (time.perf_counter() - start))
    return best


async def _measure(
    engine: Engine, prompts: list[list[int]], batch: int, max_tokens: int, k: int, repeats: int
) -> dict[str, float]:
    rows = (prompts * batch)[:batch]
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, top_logprobs=k, ignore_eos=True)
    completions = [c.token_ids for c in await engine.generate(rows, params)]

    async def gen() -> int:
        return sum(len(c.token_ids) for c in await engine.generate(rows, params))

    async def score() -> int:
        return sum(len(s.target_logprobs) for s in await engine.score(rows, completions, k))

    return {
        "generate": await _best_of(repeats, gen),
        "score": await _best_of(repeats, score),
    }


def _default_model() -> tuple[Path, list[list[int]]]:
    from tokenizers import Tokenizer

    from distill.tasks import generate_tasks
    from distill.tiny import build_tiny_world
    from distill.tokenizer import encode_prompt

    teacher = build_tiny_world().teacher
    tok = Tokenizer.from_file(str(teacher / "tokenizer.json"))
    return teacher, [encode_prompt(tok, t.prompt) for t in generate_tasks("bench", 16)]


async def _requests_per_answer(engine: Engine, prompts: list[list[int]], k: int) -> float:
    """vLLM requests one ``score`` issues per answer (1.0: no extra EOS probes)."""
    params = SamplingParams(max_tokens=16, temperature=0.0, top_logprobs=k)
    rows = (prompts * 16)[:16]
    completions = [c.token_ids for c in await engine.generate(rows, params)]
    sent = engine.requests_sent  # type: ignore[attr-defined]
    await engine.score(rows, completions, k)
    return float(engine.requests_sent - sent) / len(rows)  # type: ignore[attr-defined]


async def _run(args: argparse.Namespace) -> int:
    model, prompts = _default_model()
    if args.model:
        model = Path(args.model)
    batches = [int(b) for b in args.batches.split(",")]
    results: dict[tuple[str, str, int], float] = {}
    provenance = {}
    per_answer: float | None = None
    for kind in args.engines.split(","):
        engine = load_engine(kind, model, device=args.device)
        provenance[kind] = engine.info.provenance
        try:
            for batch in batches:
                cell = await _measure(engine, prompts, batch, args.max_tokens, args.k, args.repeats)
                for op, rate in cell.items():
                    results[(op, kind, batch)] = rate
            if kind == "vllm":
                per_answer = await _requests_per_answer(engine, prompts, args.k)
        finally:
            await engine.close()
    for kind, prov in provenance.items():
        print(f"{kind}: {prov.version}, {prov.dtype}, {prov.device}, {prov.model}")
    print(f"\nmax_tokens={args.max_tokens} k={args.k} best of {args.repeats}, tokens/s\n")
    print("| op | batch | transformers | vLLM | vLLM / transformers |")
    print("| --- | --- | --- | --- | --- |")
    for op in ("generate", "score"):
        for batch in batches:
            hf = results.get((op, "hf", batch))
            vl = results.get((op, "vllm", batch))
            ratio = f"{vl / hf:.2f}x" if hf and vl else "-"
            cells = [f"{r:.0f}" if r else "-" for r in (hf, vl)]
            print(f"| {op} | {batch} | {cells[0]} | {cells[1]} | {ratio} |")
    if per_answer is not None:
        print(f"\nvLLM requests per scored answer: {per_answer:.2f} (extra: {per_answer - 1:.2f})")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "engines": {k: v.to_dict() for k, v in provenance.items()},
                    "cells": [
                        {"op": op, "engine": kind, "batch": b, "tokens_per_s": rate}
                        for (op, kind, b), rate in results.items()
                    ],
                    "vllm_requests_per_answer": per_answer,
                },
                indent=1,
            )
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="subnet bench engine", description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="HF model dir (default: the tiny world's teacher)")
    ap.add_argument("--engines", default="hf,vllm")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: the best one)")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    return asyncio.run(_run(ap.parse_args(argv)))


if __name__ == "__main__":  # vLLM spawns its engine core: the guard is required
    raise SystemExit(main())
