"""Offline vs on-policy distillation vs cross-entropy on the tiny world, per world seed.

For each seed the world is built (or found in the cache) with that seed; its teacher's targets
over the world's training prompts are built once into ``--work``; then two students train from
the same init with the same budget (the world's steps, batch and schedule): offline targets
only, and with a share ``--ratio`` of every batch from the student's own samples scored by the
teacher (refreshed every ``--every`` steps, from step ``--start`` on). The world's
cross-entropy student is the third. Each is measured by the validator's own numbers on
held-out prompts (``distill.evaluate``): ``s_kl``, forward KL and the final score along
temperature-1 answers (what the validator asks), and forward KL along greedy answers (the
quality test's measure), with correctness.

Usage: ``subnet bench onpolicy [--seeds 0,1,2] [--ratio 0.5] [--every 50] [--start 0]
[--tasks 300] [--work DIR]``.
Numbers go to docs/benchmarks.md; nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


async def _seed(seed: int, args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    from distill.distilled import (
        DistilledRecipe,
        build_world_targets,
        ensure_distilled,
        make_init,
        train_config,
    )
    from distill.evaluate import evaluate
    from distill.live_teacher import train_with_teacher
    from distill.tiny import TinyRecipe, build_tiny_world, heldout_tasks

    world = await asyncio.to_thread(build_tiny_world, TinyRecipe().with_seed(seed))
    await ensure_distilled(world)
    recipe, root = DistilledRecipe(), work / f"seed{seed}"
    targets = root / "targets"
    if not (targets / "manifest.json").is_file() or not json.loads(
        (targets / "manifest.json").read_text()
    ).get("complete"):
        await build_world_targets(world, recipe, targets)
    init = root / "init"
    if not init.is_dir():
        make_init(world, init)
    students: dict[str, Path] = {}
    seconds: dict[str, float] = {}
    for name, ratio in (("offline", 0.0), ("onpolicy", args.ratio)):
        out = root / (f"{name}-r{ratio}-e{args.every}-s{args.start}" if ratio else name)
        cfg = train_config(
            world,
            recipe,
            onpolicy_ratio=ratio,
            onpolicy_every=args.every,
            onpolicy_start=args.start,
        )
        if not (out / "model.safetensors").is_file():  # else kept from an earlier run
            t0 = time.perf_counter()
            await train_with_teacher(
                init, targets, out, cfg, teacher=world.teacher, engine_kind="hf", progress=False
            )
            seconds[name] = time.perf_counter() - t0
        students[name] = out
    students["cross-entropy"] = world.undistilled
    students["teacher"] = world.teacher
    tasks = heldout_tasks(world, args.tasks)
    models = list(students.values())
    sampled = await evaluate(models, world.teacher, tasks, engine_kind="hf", temperature=1.0)
    greedy = await evaluate(
        models, world.teacher, tasks, engine_kind="hf", k=16, max_tokens=24, temperature=0.0
    )
    rows = []
    for (name, _), s, g in zip(students.items(), sampled, greedy, strict=True):
        rows.append(
            {
                "seed": seed,
                "student": name,
                "s_kl_t1": round(s.s_kl, 4),
                "fkl_t1": round(s.forward_kl, 4),
                "score_t1": round(s.score, 4),
                "fkl_greedy": round(g.forward_kl, 4),
                "correct_greedy": round(g.correctness, 4),
                "train_s": round(seconds.get(name, float("nan")), 1),
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="subnet bench onpolicy", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--seeds", default="0", help="world seeds, comma-separated")
    parser.add_argument("--ratio", type=float, default=0.5, help="on-policy share of a batch")
    parser.add_argument("--every", type=int, default=50, help="steps between refreshes")
    parser.add_argument("--start", type=int, default=0, help="offline-only steps first")
    parser.add_argument("--tasks", type=int, default=300, help="held-out prompts per seed")
    parser.add_argument("--work", type=Path, default=None, help="keep targets/students here")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        rows = [row for seed in seeds for row in asyncio.run(_seed(seed, args, work))]
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + " --- |" * len(cols))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in cols) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
