"""Validator throughput: answers scored per second end to end vs the teacher's raw ``score``.

N simulated miners (16, 64, 256 by default), each a real miner app (its own hotkey, signed SSE
responses, btauth) on loopback, serving answers the tiny world's student generated beforehand
(a replay engine: the miners cost nothing, so the clock measures the validator). One validator
step = query every miner on every task, verify signatures, gate, one batched teacher ``score``
pass, divergences, scores, EMA and the SQLite commit. The raw number is the teacher's ``score``
alone on exactly the same (prompt, answer) pairs in one call. The ratio says how much of the
step the teacher's forward pass is; the rest is the validator's overhead. The chain is a static
in-memory metagraph (the chain is not what is measured); spot checks are off (their cost is
one student ``score`` pass over the checked fraction).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from bittensor.sp_core import Keypair
from tokenizers import Tokenizer

from distill.tasks import generate_tasks
from distill.tiny import tiny_world
from neurons.miner.app import Gate, build_app
from neurons.miner.policy import CallerInfo, CallerPolicy, Directory, PolicyLimits, PriorityLimiter
from neurons.miner.serving import MinerService
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.miner_client import miner_session
from neurons.validator.spotcheck import ModelCache
from neurons.validator.step import StepContext, run_step
from neurons.validator.store import Store
from subnet import auth
from subnet.chain.types import Axon, Commitment, MetagraphView, NeuronView
from subnet.config import load_config
from subnet.engine import Completion, Engine, EngineInfo, SamplingParams, Scored, load_engine
from subnet.engine.types import TokenIds
from subnet.metrics import MinerMetrics
from subnet.tokenizer import ModelTokenizer


@dataclass
class KeyWallet:
    coldkey: Keypair
    coldkeypub: Keypair
    hotkey: Keypair

    @classmethod
    def of(cls, name: str) -> KeyWallet:
        cold = Keypair.create_from_uri(f"//{name}")
        return cls(cold, cold, Keypair.create_from_uri(f"//{name}//hot"))


class Replay:
    """Serves completions generated beforehand, keyed by prompt."""

    def __init__(self, info: EngineInfo, answers: dict[tuple[int, ...], Completion]) -> None:
        self._info, self.answers = info, answers

    @property
    def info(self) -> EngineInfo:
        return self._info

    async def generate(
        self, prompts: Sequence[TokenIds], params: SamplingParams
    ) -> list[Completion]:
        return [self.answers[tuple(p)] for p in prompts]

    async def score(
        self, prompts: Sequence[TokenIds], completions: Sequence[TokenIds], k: int
    ) -> list[Scored]:
        raise NotImplementedError

    async def close(self) -> None:
        return None


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


async def bench(n_miners: int, tasks: int, max_tokens: int, repeats: int) -> dict[str, float]:
    world = await tiny_world()
    cfg = load_config(
        None,
        env={},
        overrides={
            "validator.tasks_per_step": tasks,
            "validator.max_tokens": max_tokens,
            "validator.engine": "hf",
            "verify.spot_check_fraction": 0.0,
            "validator.query_timeout": 120.0,
        },
    )
    teacher = load_engine("hf", world.teacher)
    student = load_engine("hf", world.undistilled)
    tok = Tokenizer.from_file(str(world.teacher / "tokenizer.json"))
    k = cfg.validator.top_k
    seeds = [f"bench-{i}" for i in range(repeats)]
    prompts = [tok.encode(t.prompt).ids for s in seeds for t in generate_tasks(s, tasks)]
    gen = await student.generate(
        prompts, SamplingParams(max_tokens=max_tokens, top_logprobs=k, seed=1)
    )
    replay = Replay(student.info, {tuple(p): c for p, c in zip(prompts, gen, strict=True)})
    vali = KeyWallet.of("bench-vali")
    directory = Directory({vali.hotkey.ss58_address: CallerInfo(0, 1e6, True)})
    runners, neurons, ids = [], [_neuron(0, vali.hotkey.ss58_address, None)], {}
    with tempfile.TemporaryDirectory() as tmp:
        nonces = auth.SqliteNonceStore(Path(tmp) / "nonces.sqlite", 600.0)
        for i in range(n_miners):
            w = KeyWallet.of(f"bench-miner-{i}")
            ident = f"v1:{i:064x}:m{i}:local"
            svc = MinerService(
                replay,
                identity=ident,
                model_name=f"m{i}",
                codec=None,
                max_tokens=max_tokens,
                max_logprobs=k,
            )
            gate = Gate(
                w,
                w.hotkey.ss58_address,
                nonces,
                CallerPolicy(directory, PolicyLimits(rate_rps=1e6, burst=10**6)),
                PriorityLimiter(64, 4096),
            )
            runner = web.AppRunner(build_app(svc, gate, MinerMetrics()), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            runners.append(runner)
            neurons.append(_neuron(i + 1, w.hotkey.ss58_address, runner.addresses[0][1]))
            ids[w.hotkey.ss58_address] = Commitment(ident, 1)
        mg = MetagraphView(1, 1, 360, "", "", tuple(neurons))
        step_times, raw_times, n_answers = [], [], 0
        async with miner_session(
            connector=aiohttp.TCPConnector(limit=cfg.validator.concurrency)
        ) as session:
            store = Store(Path(tmp) / "v.sqlite")
            ctx = StepContext(
                cfg,
                StaticChain(mg, ids),
                1,
                vali,
                vali.hotkey.ss58_address,
                teacher,
                ModelTokenizer(world.teacher),
                store,
                ValidatorMetrics(),
                ModelCache([], 1, _no_loader),
                session,
            )
            for i, seed in enumerate(seeds):
                t0 = time.perf_counter()
                res = await run_step(ctx, i + 1, i + 1, seed)
                step_times.append(time.perf_counter() - t0)
                n_answers = res.n_answers
                step_prompts = [tok.encode(t.prompt).ids for t in generate_tasks(seed, tasks)]
                pairs = [
                    (p, replay.answers[tuple(p)].token_ids.tolist())
                    for _ in range(n_miners)
                    for p in step_prompts
                ]
                t0 = time.perf_counter()
                await teacher.score([p for p, _ in pairs], [c for _, c in pairs], k)
                raw_times.append(time.perf_counter() - t0)
            store.close()
        for r in runners:
            await r.cleanup()
        nonces.close()
    await teacher.close()
    await student.close()
    e2e = n_answers / statistics.median(step_times)
    raw = n_answers / statistics.median(raw_times)
    return {
        "miners": n_miners,
        "answers": n_answers,
        "e2e_per_s": e2e,
        "raw_per_s": raw,
        "ratio": e2e / raw,
    }


async def _no_loader(path: Path) -> Engine:
    raise RuntimeError("spot checks are off in this benchmark")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="subnet bench validator", description=__doc__.split("\n")[0])
    p.add_argument("--miners", default="16,64,256")
    p.add_argument("--tasks", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    print(f"{'miners':>7} {'answers':>8} {'e2e ans/s':>10} {'teacher ans/s':>14} {'ratio':>6}")
    for n in [int(x) for x in args.miners.split(",")]:
        r = asyncio.run(bench(n, args.tasks, args.max_tokens, args.repeats))
        print(
            f"{r['miners']:>7} {r['answers']:>8} {r['e2e_per_s']:>10.1f} "
            f"{r['raw_per_s']:>14.1f} {r['ratio']:>6.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
