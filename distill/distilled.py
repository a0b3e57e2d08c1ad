"""The tiny world's distilled student, made by this package's own toolkit from the tiny teacher.

Same architecture, init seed, step count and optimizer settings as the world's undistilled
student (``distill.tiny``); the only difference is what it learns from: the teacher's top-K
targets (``distill.targets`` with the transformers engine, greedy, over the world's seeded
training prompts) instead of the task text. Built once into ``world.root/student-distilled``
through ``TinyWorld.ensure_model`` (atomic, locked), deterministic for a given thread count.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from distill.tasks import iter_tasks

#: Bumped when this recipe changes what it builds (the world's own hash does not cover it).
DISTILLED_VERSION = "tiny-distilled/v1"


@dataclass(frozen=True)
class DistilledRecipe:
    prompts: int = 16_000  # distinct training prompts the teacher answers (4 epochs of 1000x64)
    k: int = 16
    max_tokens: int = 24
    ce_weight: float = 0.0


def ensure_distilled(
    world: Any, recipe: DistilledRecipe | None = None, log: Callable[[str], None] = lambda _: None
) -> Path:
    """``world.distilled``, building it first if the cache does not have it yet."""
    from distill.tiny import DISTILLED

    recipe = recipe or DistilledRecipe()
    return Path(world.ensure_model(DISTILLED, lambda out: _build(world, recipe, out, log)))


def _build(world: Any, recipe: DistilledRecipe, out: Path, log: Callable[[str], None]) -> None:
    import torch

    from distill.targets import TargetsConfig, build_targets
    from distill.tiny import is_holdout
    from distill.train import TrainConfig, train

    start = time.monotonic()
    info = world.info()["recipe"]
    spec, threads = info["train"], int(info["threads"])
    torch.set_num_threads(threads)
    stream = iter_tasks(info["train_seed"], info["families"])
    seen: set[str] = set()
    tasks = []
    for t in itertools.islice(stream, 50 * recipe.prompts):
        if not is_holdout(t, info["holdout_mod"]) and t.prompt not in seen:
            seen.add(t.prompt)
            tasks.append(t)
            if len(tasks) == recipe.prompts:
                break
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".distill-") as scratch:
        # The init: the undistilled student's config and tokenizer, no weights (seeded init).
        init = Path(scratch) / "init"
        init.mkdir()
        for f in world.undistilled.iterdir():
            if f.suffix != ".safetensors":
                shutil.copy2(f, init / f.name)
        targets = Path(scratch) / "targets"
        t0 = time.monotonic()
        build_targets(
            world.teacher,
            tasks,
            targets,
            TargetsConfig(k=recipe.k, max_tokens=recipe.max_tokens, batch=256, shard_size=4096),
            engine_kind="hf",
            source="tiny world training prompts",
            progress=False,
        )
        targets_s = time.monotonic() - t0
        log(f"distilled: teacher targets for {len(tasks)} prompts in {targets_s:.0f} s")
        cfg = TrainConfig(
            steps=spec["steps"],
            batch=spec["batch"],
            lr=spec["lr"],
            warmup=spec["warmup"],
            seed=spec["seed"],
            threads=threads,
            k=recipe.k,
            ce_weight=recipe.ce_weight,
            eval_every=-1,
            save_every=-1,
            device="cpu",
        )
        result = train(init, targets, out, cfg, progress=False, log=log, name="tiny-distilled")
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
    (out / "distill_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    log(f"distilled student built in {stats['seconds']} s")
