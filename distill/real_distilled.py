"""The real world's distilled student, made by this package's own toolkit from the real teacher.

Same init (``student-init``: the undistilled student before training), steps, batch and
optimizer settings as the world's undistilled student; the difference is what it learns from:
the teacher's top-K (``distill.targets``, transformers engine, greedy) on the teacher's own
answers to the training questions, through ``distill.train`` over the full 129,280-id softmax
(no active-vocabulary shortcut here: this is the toolkit a miner runs). Built once into
``world.root/student-distilled`` through ``TinyWorld.ensure_model`` (atomic, locked).

The world's hash does not cover this recipe, so the student records :data:`DISTILLED_VERSION`
and its recipe in ``distill_stats.json``; one made by another version or recipe is rebuilt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distill.real_spec import STUDENT_INIT
from distill.stdlib_corpus import split_items
from distill.tasks import Task, content_key, task_id
from distill.tiny_spec import DISTILLED, TinyWorld
from distill.train_config import TrainConfig
from subnet.chat import ChatMessage

DISTILLED_VERSION = "real-distilled/v1"
STATS_FILE = "distill_stats.json"
EVAL_SEQUENCES = 128  # held out from the end of the targets by distill.train
TRAIN_FAMILY = "stdlib-train"  # the label of the training questions (task ids)


def _recipe(world: TinyWorld) -> dict[str, Any]:
    info = world.info()["recipe"]
    return {
        "version": DISTILLED_VERSION,
        "student_train": info["student_train"],
        "k": info["distill_k"],
        "max_tokens": info["max_answer_tokens"],
    }


def _current(path: Path, recipe: dict[str, Any]) -> bool:
    try:
        stats = json.loads((path / STATS_FILE).read_text())
    except (OSError, ValueError):
        return False
    return bool(stats.get("recipe") == recipe)


async def ensure_real_distilled(
    world: TinyWorld, log: Callable[[str], None] = lambda _: None
) -> Path:
    """``world.distilled``, building it first if the cache does not hold a current one."""
    recipe = _recipe(world)
    stale = world.distilled is not None and not _current(world.distilled_path(), recipe)
    if stale:
        log("distilled: the cached student is from another recipe version; rebuilding it")

    async def build(out: Path) -> None:
        await _build(world, recipe, out, log)

    return await world.ensure_model(DISTILLED, build, force=stale)


def training_tasks(world: TinyWorld, n: int) -> list[Task]:
    """``n`` training questions (a seeded shuffle, never held-out ones) as chat ``messages``:
    one user turn each, which :mod:`distill.targets` renders with the teacher's chat template
    as validators render ``prompts.jsonl``."""
    info = world.info()["recipe"]
    train, _ = split_items(int(info["holdout_mod"]))
    random.Random(f"real-distilled|{info['student_train']['seed']}").shuffle(train)
    return [
        Task(TRAIN_FAMILY, "", it.answer, task_id(TRAIN_FAMILY, content_key(turns)), turns)
        for it in train[:n]
        for turns in [(ChatMessage("user", it.question),)]
    ]


def train_config(world: TinyWorld, **changes: Any) -> TrainConfig:
    """The undistilled student's schedule (steps, batch, lr, warmup, seed, threads) on the
    teacher's top-K, over the full softmax on CPU; ``changes`` override fields (the on-policy
    benchmark)."""
    recipe = _recipe(world)
    spec = recipe["student_train"]
    cfg = TrainConfig(
        steps=spec["steps"],
        batch=spec["batch"],
        lr=spec["lr"],
        warmup=spec["warmup"],
        seed=spec["seed"],
        threads=int(world.info()["recipe"]["threads"]),
        k=recipe["k"],
        eval_sequences=EVAL_SEQUENCES,
        eval_every=-1,
        save_every=-1,
        device="cpu",
    )
    return dataclasses.replace(cfg, **changes)


def target_questions(cfg: TrainConfig) -> int:
    """Training questions the targets for ``cfg`` need: one per sequence trained on, plus the
    ones :func:`distill.train.train` holds out from their end."""
    return cfg.steps * cfg.batch + cfg.eval_sequences


async def build_world_targets(world: TinyWorld, out: Path, questions: int) -> None:
    """The teacher's top-K on its own greedy answers to ``questions`` training questions."""
    from distill.targets import TargetsConfig, build_targets
    from distill.torch_state import deterministic_torch

    recipe = _recipe(world)
    threads = int(world.info()["recipe"]["threads"])
    with deterministic_torch(recipe["student_train"]["seed"], threads):
        await build_targets(
            world.teacher,
            training_tasks(world, questions),
            out,
            TargetsConfig(
                k=recipe["k"], max_tokens=recipe["max_tokens"], batch=128, shard_size=4096
            ),
            engine_kind="hf",
            source="real world training questions",
            progress=False,
        )


async def _build(
    world: TinyWorld, recipe: dict[str, Any], out: Path, log: Callable[[str], None]
) -> None:
    from distill.real_lm import encode_items, heldout_kl, heldout_loss
    from distill.torch_state import deterministic_torch
    from distill.train import train

    start, cpu = time.monotonic(), time.process_time()
    info = world.info()["recipe"]
    threads = int(info["threads"])
    cfg = train_config(world)
    questions = target_questions(cfg)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".distill-") as scratch:
        targets = Path(scratch) / "targets"
        t0, c0 = time.monotonic(), time.process_time()
        await build_world_targets(world, targets, questions)
        targets_s, targets_cpu = time.monotonic() - t0, time.process_time() - c0
        log(f"distilled: teacher targets for {questions} questions in {targets_s:.0f} s")
        result = await asyncio.to_thread(
            train,
            world.root / STUDENT_INIT,
            targets,
            out,
            cfg,
            progress=False,
            log=log,
            name=DISTILLED,
        )
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    _, held_items = split_items(int(info["holdout_mod"]))
    held = encode_items(out, held_items)
    with deterministic_torch(0, threads):
        heldout = await asyncio.to_thread(heldout_loss, out, held)
        kl = await asyncio.to_thread(heldout_kl, world.teacher, out, held)
    stats = {
        "version": DISTILLED_VERSION,
        "recipe": recipe,
        "targets_seconds": round(targets_s, 1),
        "targets_cpu_seconds": round(targets_cpu, 1),
        "train_tokens_per_s": round(result.train_tokens_per_s),
        "eval_forward_kl": result.eval_kl,
        "heldout_loss": round(heldout, 4),
        "heldout_kl": round(kl, 4),
        "identity": result.identity,
        "seconds": round(time.monotonic() - start, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
    }
    (out / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")
    log(
        f"distilled student built in {stats['seconds']} s ({stats['cpu_seconds']} s of CPU); "
        f"held-out loss {heldout:.3f}, KL to the teacher {kl:.3f}"
    )
