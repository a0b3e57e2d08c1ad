"""The tiny world's distilled student, made by this package's own toolkit from the tiny teacher.

Same architecture, init seed, step count and optimizer settings as the world's undistilled
student (``distill.tiny``); the only difference is what it learns from: the teacher's top-K
targets (``distill.targets`` with the transformers engine, greedy, over the world's seeded
training prompts) instead of the task text. Built once into ``world.root/student-distilled``
through ``TinyWorld.ensure_model`` (atomic, locked), deterministic for a given thread count.

The world's own hash does not cover this recipe, so the built student records
:data:`DISTILLED_VERSION` and its recipe in ``distill_stats.json``; a cached student made by
another version or recipe is rebuilt instead of trusted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill.tasks import iter_tasks
from distill.tiny_spec import DISTILLED, TinyWorld, is_holdout

if TYPE_CHECKING:
    from distill.train_config import TrainConfig

#: Bumped when this recipe changes what it builds. v2: the saved identity names the student
#: (v1 named it after the last file the trainer copied).
DISTILLED_VERSION = "tiny-distilled/v2"
STATS_FILE = "distill_stats.json"


@dataclass(frozen=True)
class DistilledRecipe:
    prompts: int = 16_000  # distinct training prompts the teacher answers (6 epochs of 1500x64)
    k: int = 16
    max_tokens: int = 24
    ce_weight: float = 0.0


def _current(path: Path, recipe: DistilledRecipe) -> bool:
    """True when ``path`` holds a student this version built from ``recipe``."""
    try:
        stats = json.loads((path / STATS_FILE).read_text())
    except (OSError, ValueError):
        return False
    return bool(stats.get("version") == DISTILLED_VERSION and stats.get("recipe") == asdict(recipe))


async def ensure_distilled(
    world: TinyWorld,
    recipe: DistilledRecipe | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> Path:
    """``world.distilled``, building it first if the cache does not hold a current one."""
    recipe = recipe or DistilledRecipe()
    stale = world.distilled is not None and not _current(world.distilled_path(), recipe)
    if stale:
        log("distilled: the cached student is from another recipe version; rebuilding it")

    async def build(out: Path) -> None:
        await _build(world, recipe, out, log)

    return await world.ensure_model(DISTILLED, build, force=stale)


def _training_tasks(info: dict[str, Any], n: int) -> list[Any]:
    stream = iter_tasks(info["train_seed"], info["families"])
    seen: set[str] = set()
    tasks = []
    for t in itertools.islice(stream, 50 * n):
        if not is_holdout(t, info["holdout_mod"]) and t.prompt not in seen:
            seen.add(t.prompt)
            tasks.append(t)
            if len(tasks) == n:
                break
    return tasks


def make_init(world: TinyWorld, out: Path) -> Path:
    """The init: the undistilled student's config and tokenizer, no weights (seeded init)."""
    out.mkdir(parents=True)
    for f in world.undistilled.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy2(f, out / f.name)
    return out


async def build_world_targets(world: TinyWorld, recipe: DistilledRecipe, out: Path) -> float:
    """The teacher's top-K targets over the world's training prompts; returns seconds taken."""
    from distill.targets import TargetsConfig, build_targets
    from distill.torch_state import deterministic_torch

    info = world.info()["recipe"]
    t0 = time.monotonic()
    with deterministic_torch(info["train"]["seed"], int(info["threads"])):
        await build_targets(
            world.teacher,
            _training_tasks(info, recipe.prompts),
            out,
            TargetsConfig(k=recipe.k, max_tokens=recipe.max_tokens, batch=256, shard_size=4096),
            engine_kind="hf",
            source="tiny world training prompts",
            progress=False,
        )
    return time.monotonic() - t0


def train_config(world: TinyWorld, recipe: DistilledRecipe, **changes: Any) -> TrainConfig:
    """The undistilled student's schedule (steps, batch, lr, warmup, seed, threads), on the
    teacher's targets; ``changes`` override fields (the on-policy benchmark)."""
    from distill.train_config import TrainConfig

    info = world.info()["recipe"]
    spec = info["train"]
    cfg = TrainConfig(
        steps=spec["steps"],
        batch=spec["batch"],
        lr=spec["lr"],
        warmup=spec["warmup"],
        seed=spec["seed"],
        threads=int(info["threads"]),
        k=recipe.k,
        ce_weight=recipe.ce_weight,
        eval_every=-1,
        save_every=-1,
        device="cpu",
    )
    return dataclasses.replace(cfg, **changes)


async def _build(
    world: TinyWorld, recipe: DistilledRecipe, out: Path, log: Callable[[str], None]
) -> None:
    from distill.train import train

    start = time.monotonic()
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".distill-") as scratch:
        init = make_init(world, Path(scratch) / "init")
        targets = Path(scratch) / "targets"
        targets_s = await build_world_targets(world, recipe, targets)
        log(f"distilled: teacher targets in {targets_s:.0f} s")
        # CPU-bound for a minute or two: off the event loop. Named after its folder, as the
        # miner names what it commits by default.
        cfg = train_config(world, recipe)
        result = await asyncio.to_thread(
            train, init, targets, out, cfg, progress=False, log=log, name=DISTILLED
        )
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    stats = {
        "version": DISTILLED_VERSION,
        "recipe": asdict(recipe),
        "targets_seconds": round(targets_s, 1),
        "train_tokens_per_s": round(result.train_tokens_per_s),
        "eval_forward_kl": result.eval_kl,
        "identity": result.identity,
        "seconds": round(time.monotonic() - start, 1),
    }
    (out / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")
    log(f"distilled student built in {stats['seconds']} s")
