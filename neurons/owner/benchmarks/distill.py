"""Distillation toolkit throughput on this machine, side by side in one run.

1. Target building: the tiny teacher answers the same seeded prompts with top-K through the
   vLLM engine and through the transformers engine (engine start-up excluded; the first batch
   of each is a warm-up and is not timed). Reported as generated positions per second, and
   the ratio vLLM / transformers.
2. Training: ``distill.train`` on the transformers-built targets with the tiny world's student
   shape, input tokens per second.

Usage: ``subnet bench distill [--prompts 2048] [--steps 100] [--skip-vllm]``.
Numbers go to docs/benchmarks.md; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path


async def _targets_rate(kind: str, teacher: Path, prompts: int, out: Path, k: int) -> float:
    from distill.targets import TargetsConfig, build_targets
    from distill.tasks import generate_tasks
    from subnet.engine import load_engine

    engine = load_engine(kind, teacher, max_top_logprobs=max(k, 20))  # type: ignore[arg-type]
    try:
        cfg = TargetsConfig(k=k, max_tokens=24, batch=256, shard_size=prompts)
        warm = generate_tasks("bench/warm", 256)
        await build_targets(teacher, warm, out / "warm", cfg, engine=engine, progress=False)
        t0 = time.perf_counter()
        m = await build_targets(
            teacher,
            generate_tasks("bench", prompts),
            out / kind,
            cfg,
            engine=engine,
            progress=False,
        )
        return float(m["positions"]) / (time.perf_counter() - t0)
    finally:
        await engine.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="subnet bench distill", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--prompts", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--skip-vllm", action="store_true")
    args = parser.parse_args(argv)

    from distill.tiny import build_tiny_world
    from distill.train import TrainConfig, train

    world = build_tiny_world()
    report: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        kinds = ["hf"] if args.skip_vllm else ["vllm", "hf"]
        for kind in kinds:
            report[f"targets_{kind}_positions_per_s"] = asyncio.run(
                _targets_rate(kind, world.teacher, args.prompts, work, args.k)
            )
            print(
                f"targets {kind}: {report[f'targets_{kind}_positions_per_s']:,.0f} positions/s",
                flush=True,
            )
        if not args.skip_vllm:
            report["targets_ratio_vllm_over_hf"] = (
                report["targets_vllm_positions_per_s"] / report["targets_hf_positions_per_s"]
            )

        init = work / "init"
        init.mkdir()
        for f in world.undistilled.iterdir():
            if f.suffix != ".safetensors":
                shutil.copy2(f, init / f.name)
        spec = world.info()["recipe"]["train"]
        cfg = TrainConfig(
            steps=args.steps,
            batch=spec["batch"],
            lr=spec["lr"],
            warmup=10,
            eval_every=-1,
            save_every=-1,
            k=args.k,
        )
        result = train(init, work / "hf", work / "student", cfg, progress=False, log=lambda _: None)
        report["train_tokens_per_s"] = result.train_tokens_per_s
        print(
            f"train: {result.train_tokens_per_s:,.0f} input tokens/s "
            f"(batch {spec['batch']}, {args.steps} steps, threads {cfg.threads})"
        )
    print(json.dumps({k: round(v, 2) for k, v in report.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
