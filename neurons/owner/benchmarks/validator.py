"""Validator throughput: answers judged per second end to end vs the teacher's raw ``score``.

    subnet bench validator [--quick] [--miners 16,64,256] [--steps 3] [--json PATH]

N simulated miners (``benchkit.miner_farm``: each its own hotkey and port, in a separate
process, answering with completions the tiny world's undistilled student generated beforehand,
in the production SSE format, signed over each request) are queried by one real validator step
(``neurons.validator.step.run_step``: signed streamed queries, signature checks, gates, the
teacher's micro-batched ``score``, divergences, scores, EMA, the SQLite commit); spot checks
are off (their cost is one student ``score`` over the checked fraction) and the metagraph is
static (the chain is not what is measured). "teacher" is the teacher's ``score`` alone on
exactly the same (prompt, answer) pairs, run right after each step (side by side), the faster
of one call for all and calls of ``validator.score_batch`` answers (on a CPU a mid-sized batch
beats one huge one); the ratio is e2e / teacher answers per second. Also printed: the phase
breakdown (medians), teacher tokens per step and the validator process's peak RSS during steps.
A warm-up step (connections, first metric labels) precedes the measured ones.

"validator alone": the same steps again with the teacher replayed (``ReplayEngine``: its real
answers for these pairs, recorded beforehand, at no cost), i.e. the validator's own work per
answer, what it costs the host when the teacher runs on a GPU; "ratio <= X" is the most the
ratio can be on this machine given the step's CPU (a step takes at least CPU seconds / cores).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
from bittensor.sp_core import Keypair

from distill.tiny import tiny_world
from neurons.owner.benchkit.loopwatch import LoopWatch
from neurons.owner.benchkit.miner_farm import Answer, MinerFarm, identity, miner_uri
from neurons.owner.benchkit.zero_engine import ReplayEngine
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.miner_client import miner_session
from neurons.validator.prompts import PromptSelector
from neurons.validator.spotcheck import ModelCache
from neurons.validator.step import StepContext, StepResult, run_step
from neurons.validator.store import Store
from subnet import auth
from subnet.chain.types import Axon, Commitment, MetagraphView, NeuronView
from subnet.config import load_config
from subnet.engine import Engine, SamplingParams, load_engine
from subnet.tokenizer import ModelTokenizer

CORES = len(os.sched_getaffinity(0))
PHASES = ("setup", "query", "score_tail", "spot_check", "organic", "commit", "teacher_busy")


@dataclass
class KeyWallet:
    coldkey: Keypair
    coldkeypub: Keypair
    hotkey: Keypair

    @classmethod
    def of(cls, name: str) -> KeyWallet:
        cold = Keypair.create_from_uri(f"//{name}")
        return cls(cold, cold, Keypair.create_from_uri(f"//{name}//hot"))


class StaticChain:
    def __init__(self, mg: MetagraphView, identities: dict[str, Commitment]) -> None:
        self.mg, self.ids = mg, identities

    async def metagraph(self, netuid: int, *, max_age_blocks: int = 1) -> MetagraphView:
        return self.mg

    async def identities(self, netuid: int) -> dict[str, Commitment]:
        return self.ids


def _neuron(uid: int, hotkey: str, port: int | None) -> NeuronView:
    axon = Axon("127.0.0.1", port) if port else None
    return NeuronView(
        uid, hotkey, hotkey, 0.0, 0, False, axon, 0.0, 0.0, 0.0, 0, 0.0, 0.0, 0, 0, True
    )


async def _no_loader(path: Path) -> Engine:
    raise RuntimeError("spot checks are off in this benchmark")


async def bench(
    n_miners: int,
    tasks: int,
    max_tokens: int,
    steps: int,
    engine: Literal["hf", "vllm"] = "hf",
    device: str | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    world = await tiny_world()
    cfg = load_config(
        None,
        env={},
        overrides={
            **(settings or {}),
            "validator.tasks_per_step": tasks,
            "validator.max_tokens": max_tokens,
            "validator.engine": engine,
            "verify.spot_check_fraction": 0.0,
            "validator.query_timeout": 300.0,
            "validator.prompt_window": 0,  # each step asks exactly what select() says below
        },
    )
    teacher = load_engine(engine, world.teacher, device=device)
    student = load_engine("hf", world.undistilled, device=device)
    tok = ModelTokenizer(world.teacher)
    selector = PromptSelector.from_config(cfg.validator, tok, teacher.info)
    k = cfg.validator.top_k
    seeds = [f"bench-{i}" for i in range(steps + 1)]  # the first is the warm-up
    prompts = [p for s in seeds for p in selector.select(s, tasks).token_ids]
    gen = await student.generate(
        prompts, SamplingParams(max_tokens=max_tokens, top_logprobs=k, seed=1)
    )
    await student.close()
    answers = {
        tuple(p): Answer(
            c.token_ids, c.sampled_logprobs, c.top_ids, c.top_logprobs, c.finish_reason
        )
        for p, c in zip(prompts, gen, strict=True)
    }
    farm = MinerFarm(n_miners, answers, k)
    vali = KeyWallet.of("bench-vali")
    neurons, ids = [_neuron(0, vali.hotkey.ss58_address, None)], {}
    for i, port in enumerate(farm.ports):
        hotkey = Keypair.create_from_uri(miner_uri(i)).ss58_address
        neurons.append(_neuron(i + 1, hotkey, port))
        ids[hotkey] = Commitment(identity(i), 1)
    mg = MetagraphView(1, 1, 360, "", "", tuple(neurons))
    rows: list[dict[str, Any]] = []
    gc.freeze()  # as the validator node does once its engines are loaded (main.serve)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            connector = aiohttp.TCPConnector(limit=0)  # as the validator node's session
            async with miner_session(connector=connector) as session:
                store = Store(Path(tmp) / "v.sqlite")
                ctx = StepContext(
                    cfg,
                    StaticChain(mg, ids),
                    1,
                    auth.hotkey_signer(vali),
                    vali.hotkey.ss58_address,
                    teacher,
                    tok,
                    store,
                    ValidatorMetrics(),
                    ModelCache([], 1, _no_loader),
                    session,
                )
                for i, seed in enumerate(seeds):
                    farm_cpu = farm.cpu_seconds()
                    row = await _one_step(ctx, teacher, selector, answers, i, seed, tasks, k)
                    row["farm_cpu_s"] = farm.cpu_seconds() - farm_cpu
                    rows.append(row)
                # The same steps again with the teacher's answers replayed at no cost: the
                # validator's own work alone, as when its teacher runs on a GPU.
                replay = await ReplayEngine.record(
                    teacher,
                    prompts,
                    SamplingParams(max_tokens=max_tokens, temperature=0.0),
                    [(p, answers[tuple(p)].token_ids.tolist()) for p in prompts],
                    min(k, teacher.info.max_top_logprobs),
                )
                alone_ctx = dataclasses.replace(ctx, teacher=replay)
                for i, seed in enumerate(seeds):
                    step = len(seeds) + i + 1
                    t0, cpu0 = time.perf_counter(), time.process_time()
                    res = await run_step(alone_ctx, step, step, seed)
                    _check_judged(res, rows[i]["answers"])
                    rows[i]["alone_s"] = time.perf_counter() - t0
                    rows[i]["alone_cpu_s"] = time.process_time() - cpu0
                store.close()
    finally:
        gc.unfreeze()
        farm.close()
        await teacher.close()
    return _summary(n_miners, rows[1:])


async def _one_step(
    ctx: StepContext,
    teacher: Engine,
    selector: PromptSelector,
    answers: dict[tuple[int, ...], Answer],
    i: int,
    seed: str,
    tasks: int,
    k: int,
) -> dict[str, Any]:
    """One validator step, then the teacher's raw ``score`` on the same pairs."""
    watch = LoopWatch(period=0.01)
    watch.start()
    t0, cpu0 = time.perf_counter(), time.process_time()
    res = await run_step(ctx, i + 1, i + 1, seed)
    e2e, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    mem = await watch.stop()
    step_prompts = selector.select(seed, tasks).token_ids
    mg = await ctx.chain.metagraph(ctx.netuid)
    n_miners = len([n for n in mg.neurons if n.axon is not None])
    pairs = [
        (p, answers[tuple(p)].token_ids.tolist()) for _ in range(n_miners) for p in step_prompts
    ]
    # The teacher alone, two ways: every pair in one call, and in calls of the step's largest
    # micro-batch (on a CPU a middle size beats one huge batch); the faster one is "raw".
    timings = []
    for size in (len(pairs), ctx.cfg.validator.score_batch):
        t0, cpu0 = time.perf_counter(), time.process_time()
        for lo in range(0, len(pairs), size):
            chunk = pairs[lo : lo + size]
            await teacher.score([p for p, _ in chunk], [c for _, c in chunk], k)
        timings.append((time.perf_counter() - t0, time.process_time() - cpu0))
    (raw, raw_cpu), (one_call, _) = min(timings), timings[0]
    _check_judged(res, len(pairs))
    return {
        "e2e_s": e2e,
        "raw_s": raw,
        "raw_one_call_s": one_call,
        "step_cpu_s": cpu,
        "raw_cpu_s": raw_cpu,
        "answers": res.n_answers,
        "teacher_tokens": res.teacher_tokens,
        "peak_rss_mb": mem["peak_rss_mb"],
        "phases": dict(res.phases),
    }


def _check_judged(res: StepResult, expected: int) -> None:
    if res.n_answers != expected:
        raise SystemExit(f"step judged {res.n_answers} answers, expected {expected}")
    bad = {c for cs in res.causes.values() for c in cs} - {"ok"}
    if bad:
        raise SystemExit(f"simulated miners' answers failed gates: {sorted(bad)}")


def _summary(n_miners: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    med = statistics.median
    n = rows[0]["answers"]
    e2e, raw = med(r["e2e_s"] for r in rows), med(r["raw_s"] for r in rows)
    return {
        "miners": n_miners,
        "answers": n,
        "e2e_per_s": n / e2e,
        "raw_per_s": n / raw,
        "raw_one_call_per_s": n / med(r["raw_one_call_s"] for r in rows),
        "ratio": raw / e2e,
        "step_s": e2e,
        "teacher_tokens": rows[0]["teacher_tokens"],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
        # CPU seconds per step: the validator process (teacher threads included), the farm,
        # and the raw teacher alone; on a machine whose cores the teacher already fills, the
        # ratio cannot exceed raw_cpu / (step_cpu + farm_cpu)
        "step_cpu_s": med(r["step_cpu_s"] for r in rows),
        "farm_cpu_s": med(r["farm_cpu_s"] for r in rows),
        "raw_cpu_s": med(r["raw_cpu_s"] for r in rows),
        # The validator alone (teacher replayed at no cost): answers/s it can judge, its CPU
        # per answer, and how many of this machine's teachers it could keep up with.
        "alone_per_s": n / med(r["alone_s"] for r in rows),
        "alone_cpu_ms_per_answer": 1e3 * med(r["alone_cpu_s"] for r in rows) / n,
        "alone_vs_teacher": raw / med(r["alone_s"] for r in rows),
        # On C cores, wall >= CPU / C: the ratio this machine allows the step at most.
        "cpu_ceiling": raw
        * CORES
        / (med(r["step_cpu_s"] for r in rows) + med(r["farm_cpu_s"] for r in rows)),
        "phases": {p: med(r["phases"].get(p, 0.0) for r in rows) for p in PHASES},
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="subnet bench validator", description=__doc__.split("\n")[0])
    p.add_argument("--miners", default="16,64,256")
    p.add_argument("--tasks", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--steps", type=int, default=3, help="measured steps per level (+1 warm-up)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--engine", default="hf", choices=("hf", "vllm"), help="the teacher's engine")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: the best one)")
    p.add_argument("--quick", action="store_true", help="64 miners, 2 steps (< 2 minutes)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for the step, e.g. validator.score_batch=64 (repeatable)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.miners, args.steps = "64", 2
    settings = dict(kv.split("=", 1) for kv in args.set)
    print(
        f"{'miners':>7} {'answers':>8} {'step s':>7} {'e2e ans/s':>10} {'teacher ans/s':>14}"
        f" {'ratio':>6} {'tokens':>7} {'rss MB':>7}  phases (s, median): " + " ".join(PHASES)
    )
    results = []
    for n in [int(x) for x in args.miners.split(",")]:
        r = asyncio.run(
            bench(n, args.tasks, args.max_tokens, args.steps, args.engine, args.device, settings)
        )
        results.append(r)
        print(
            f"{r['miners']:>7} {r['answers']:>8} {r['step_s']:>7.2f} {r['e2e_per_s']:>10.1f}"
            f" {r['raw_per_s']:>14.1f} {r['ratio']:>6.2f} {r['teacher_tokens']:>7}"
            f" {r['peak_rss_mb']:>7.0f}  "
            + " ".join(f"{r['phases'][ph]:.2f}" for ph in PHASES)
            + f"  | CPU s: step {r['step_cpu_s']:.2f} farm {r['farm_cpu_s']:.2f}"
            f" teacher alone {r['raw_cpu_s']:.2f} (ratio <= {r['cpu_ceiling']:.2f} on"
            f" {CORES} cores) | validator alone: {r['alone_per_s']:.0f} ans/s ="
            f" {r['alone_vs_teacher']:.2f}x the teacher, {r['alone_cpu_ms_per_answer']:.2f}"
            " CPU ms/answer",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(
        "validator e2e / raw teacher: "
        + ", ".join(f"{r['ratio']:.2f} ({r['miners']} miners)" for r in results)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
