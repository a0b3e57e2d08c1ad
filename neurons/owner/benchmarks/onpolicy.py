"""Offline vs on-policy distillation vs cross-entropy on the tiny (per seed) or the real world.

Tiny world (``--world tiny``, the default): for each seed the world is built (or found in the
cache) with that seed; its teacher's targets over the world's training prompts are built once
into ``--work`` (:mod:`distill.distilled`); the students start from the undistilled student's
config with a seeded init and train on the world's schedule. The world's cross-entropy student
is the baseline; held-out prompts come from the world's task families.

Real world (``--world real``: DeepSeek-V4's tokenizer, a chat template, a list of EOS ids):
built (or found in the cache) with its distilled student; the teacher's targets on its own
answers to the training questions and the train config are the distilled student's
(:mod:`distill.real_distilled`), the students start from ``student-init`` (where the world's
students start), the undistilled student (trained on the docstrings) is the cross-entropy
baseline, and held-out prompts are the world's ``prompts.jsonl`` chat messages, rendered with
the teacher's chat template as validators send them. The real world has no seed.

In both, two students train from the same init with the same budget: offline targets only,
and with a share ``--ratio`` of every batch from the student's own samples scored by the
teacher (refreshed every ``--every`` steps, from step ``--start`` on). Each is measured by the
validator's own numbers on held-out prompts (``distill.evaluate``): ``s_kl``, forward KL and
the final score along temperature-1 answers (what the validator asks), and forward KL along
greedy answers (the quality test's measure), with correctness (exact answers; the real world's
docstrings are rarely matched exactly).

Usage: ``subnet bench onpolicy [--world tiny|real] [--seeds 0,1,2] [--ratio 0.5] [--every 50]
[--start 0] [--tasks 300] [--steps N] [--work DIR]``; ``--steps`` cuts the training budget
(smoke runs; on the real world the targets shrink with it).
Numbers go to docs/benchmarks.md; nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distill.tasks import Task
    from distill.train_config import TrainConfig


@dataclass(frozen=True)
class _Setup:
    """One world ready to compare on: what the two students start from and learn from."""

    label: dict[str, Any]  # the row's leading columns
    teacher: Path
    init: Path
    targets: Path
    config: Callable[..., TrainConfig]  # the train config, fields overridden by keywords
    cross_entropy: Path
    tasks: list[Task]
    root: Path  # where the students go


def _complete(targets: Path) -> bool:
    try:
        return bool(json.loads((targets / "manifest.json").read_text()).get("complete"))
    except (OSError, ValueError):
        return False


async def _tiny(seed: int, args: argparse.Namespace, work: Path) -> _Setup:
    from distill.distilled import (
        DistilledRecipe,
        build_world_targets,
        ensure_distilled,
        make_init,
        train_config,
    )
    from distill.tiny import TinyRecipe, build_tiny_world, heldout_tasks

    world = await asyncio.to_thread(build_tiny_world, TinyRecipe().with_seed(seed))
    await ensure_distilled(world)
    recipe, root = DistilledRecipe(), work / f"seed{seed}"
    targets = root / "targets"
    if not _complete(targets):
        await build_world_targets(world, recipe, targets)
    init = root / "init"
    if not init.is_dir():
        make_init(world, init)
    return _Setup(
        label={"seed": seed},
        teacher=world.teacher,
        init=init,
        targets=targets,
        config=lambda **changes: train_config(world, recipe, **changes),
        cross_entropy=world.undistilled,
        tasks=heldout_tasks(world, args.tasks),
        root=root,
    )


async def _real(args: argparse.Namespace, work: Path) -> _Setup:
    from distill.real_distilled import build_world_targets, target_questions, train_config
    from distill.real_spec import STUDENT_INIT
    from distill.real_world import heldout_tasks, real_world

    world = await real_world()
    budget = {"steps": args.steps} if args.steps else {}
    questions = target_questions(train_config(world, **budget))
    root = work / f"real-{world.root.name}"
    targets = root / f"targets-{questions}"
    if not _complete(targets):
        await build_world_targets(world, targets, questions)
    return _Setup(
        label={"world": "real"},
        teacher=world.teacher,
        init=world.root / STUDENT_INIT,
        targets=targets,
        config=lambda **changes: train_config(world, **changes),
        cross_entropy=world.undistilled,
        tasks=heldout_tasks(world, args.tasks),
        root=root,
    )


async def _compare(setup: _Setup, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Train the offline and on-policy students (kept in ``setup.root`` across runs), then
    evaluate them, the cross-entropy student and the teacher on the held-out prompts."""
    from distill.evaluate import evaluate
    from distill.live_teacher import train_with_teacher

    students: dict[str, Path] = {}
    seconds: dict[str, float] = {}
    budget = {"steps": args.steps} if args.steps else {}
    for name, ratio in (("offline", 0.0), ("onpolicy", args.ratio)):
        cfg = setup.config(
            onpolicy_ratio=ratio,
            onpolicy_every=args.every,
            onpolicy_start=args.start,
            **budget,
        )
        tag = f"{name}-r{ratio}-e{args.every}-s{args.start}" if ratio else name
        out = setup.root / (f"{tag}-n{cfg.steps}" if args.steps else tag)
        if not (out / "model.safetensors").is_file():  # else kept from an earlier run
            t0 = time.perf_counter()
            await train_with_teacher(
                setup.init,
                setup.targets,
                out,
                cfg,
                teacher=setup.teacher,
                engine_kind="hf",
                progress=False,
            )
            seconds[name] = time.perf_counter() - t0
        students[name] = out
    students["cross-entropy"] = setup.cross_entropy
    students["teacher"] = setup.teacher
    models = list(students.values())
    sampled = await evaluate(models, setup.teacher, setup.tasks, engine_kind="hf", temperature=1.0)
    greedy = await evaluate(
        models, setup.teacher, setup.tasks, engine_kind="hf", k=16, max_tokens=24, temperature=0.0
    )
    return [
        {
            **setup.label,
            "student": name,
            "s_kl_t1": round(s.s_kl, 4),
            "fkl_t1": round(s.forward_kl, 4),
            "score_t1": round(s.score, 4),
            "fkl_greedy": round(g.forward_kl, 4),
            "correct_greedy": round(g.correctness, 4),
            "train_s": round(seconds.get(name, float("nan")), 1),
        }
        for name, s, g in zip(students, sampled, greedy, strict=True)
    ]


async def _run(args: argparse.Namespace, seeds: list[int], work: Path) -> list[dict[str, Any]]:
    if args.world == "real":
        return await _compare(await _real(args, work), args)
    return [row for seed in seeds for row in await _compare(await _tiny(seed, args, work), args)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="subnet bench onpolicy", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--world", choices=("tiny", "real"), default="tiny")
    parser.add_argument("--seeds", default="0", help="tiny world seeds, comma-separated")
    parser.add_argument("--ratio", type=float, default=0.5, help="on-policy share of a batch")
    parser.add_argument("--every", type=int, default=50, help="steps between refreshes")
    parser.add_argument("--start", type=int, default=0, help="offline-only steps first")
    parser.add_argument("--tasks", type=int, default=300, help="held-out prompts per world")
    parser.add_argument(
        "--steps", type=int, default=0, help="training steps (default: the world's schedule)"
    )
    parser.add_argument("--work", type=Path, default=None, help="keep targets/students here")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if args.world == "real" and seeds != [0]:
        parser.error("--seeds applies to the tiny world only: the real world has no seed")
    if args.steps < 0:
        parser.error("--steps must be >= 1 (or 0 for the world's schedule)")
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(_run(args, seeds, args.work or Path(tmp)))
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + " --- |" * len(cols))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in cols) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
