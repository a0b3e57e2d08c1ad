"""The tiny world: a deterministic tokenizer, teacher and undistilled student, cached by recipe.

Tests, CI and the localnet need a real teacher that vLLM, transformers and the trainer load
like any Hugging Face model, without a model hub. :func:`tiny_world` builds one in a few
minutes on 2 CPU cores the first time (byte-level BPE tokenizer, a ~0.9M-parameter 4-layer Llama
teacher trained 600 steps on the add/sort/reverse families of :mod:`distill.tasks`, a
~0.14M-parameter 2-layer "undistilled" student trained 1500 steps the same way, and the
distilled student) and returns
instantly afterwards: the world lives in the user cache under the content hash of its recipe,
outside any clone, so every checkout and CI run on a machine shares it. Anything that asks the
world's models questions should draw them from ``world.info()["recipe"]["families"]``.

Layout (``world.root``)::

    recipe.json            recipe, its hash, training stats and held-out accuracy per family
    tokenizer/             tokenizer.json, tokenizer_config.json, special_tokens_map.json
    teacher/               config.json, model.safetensors, generation_config.json + tokenizer
    student-undistilled/   same files, a smaller model
    student-distilled/     added later by distill.train through TinyWorld.ensure_model

Held-out evaluation uses prompts the training stream never contains (a fixed 1-in-10 slice of
prompt space, chosen by content hash), so accuracy measures learning, not recall.

Importing this module is cheap; torch and transformers load only when a build is needed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from distill.cache import cache_root, ensure_dir
from distill.tasks import CHANCE, Task, iter_tasks, render
from distill.tiny_spec import (
    DISTILLED,
    TEACHER,
    TOKENIZER,
    UNDISTILLED,
    ModelSpec,
    TinyRecipe,
    TinyWorld,
    TrainSpec,
    is_holdout,
)

__all__ = [
    "DISTILLED",
    "ModelSpec",
    "TinyRecipe",
    "TinyWorld",
    "TrainSpec",
    "build_tiny_world",
    "heldout_tasks",
    "is_holdout",
    "tiny_world",
]


async def tiny_world(cache: Path | None = None) -> TinyWorld:
    """The default tiny world with all three models (distilled student included), built on
    first use. The base build is CPU-bound torch work: it runs in a worker thread, so the
    caller's event loop keeps serving while a fresh cache is filled."""
    from distill.distilled import ensure_distilled

    world = await asyncio.to_thread(build_tiny_world, cache=cache)
    await ensure_distilled(world)
    return world


def build_tiny_world(
    recipe: TinyRecipe | None = None,
    cache: Path | None = None,
    force: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> TinyWorld:
    """Build (or find) the world for ``recipe`` under ``<cache>/tiny/<recipe hash>``."""
    recipe = recipe or TinyRecipe()
    root = (cache or cache_root()) / "tiny" / recipe.digest()
    root.parent.mkdir(parents=True, exist_ok=True)
    built = ensure_dir(root, lambda tmp: _build(recipe, tmp, log), force=force)
    return TinyWorld(root=root, built=built)


def heldout_tasks(world: TinyWorld, n: int = 300, seed: str = "issue-7/heldout") -> list[Task]:
    """``n`` tasks of the world's families from the slice of prompt space no model trained
    on: what the quality checks (tests, ``subnet bench onpolicy``) measure students on."""
    recipe = world.info()["recipe"]
    stream = iter_tasks(seed, recipe["families"])
    return _take(iter(stream), n, lambda t: is_holdout(t, recipe["holdout_mod"]), "held-out")


# --- the build ------------------------------------------------------------------------------


def _take(stream: Iterator[Task], n: int, keep: Callable[[Task], bool], what: str) -> list[Task]:
    out: list[Task] = []
    seen: set[str] = set()
    for task in itertools.islice(stream, 200 * n + 1000):
        if keep(task) and task.prompt not in seen:
            seen.add(task.prompt)
            out.append(task)
            if len(out) == n:
                return out
    raise ValueError(f"could not draw {n} {what} tasks")


def _eval_tasks(recipe: TinyRecipe) -> list[Task]:
    def holdout(t: Task) -> bool:
        return is_holdout(t, recipe.holdout_mod)

    return [
        task
        for family in recipe.families
        for task in _take(
            iter(iter_tasks(recipe.eval_seed, [family])),
            recipe.eval_per_family,
            holdout,
            f"held-out {family}",
        )
    ]


def _prefixed(log: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    return lambda message: log(f"{prefix}: {message}")


def _build(recipe: TinyRecipe, out: Path, log: Callable[[str], None]) -> None:
    from distill import lm  # torch + transformers: only when building
    from distill.tokenizer import build_tokenizer, save_tokenizer
    from distill.torch_state import deterministic_torch

    start = time.monotonic()
    log(f"building tiny world {recipe.digest()} into {out}")
    texts = itertools.islice(
        iter_tasks(recipe.tokenizer_seed, recipe.families), recipe.tokenizer_texts
    )
    tok = build_tokenizer((render(t) for t in texts), recipe.vocab_size)
    save_tokenizer(tok, out / TOKENIZER, recipe.max_positions)

    spec = recipe.train
    stream = (t for t in iter_tasks(recipe.train_seed, recipe.families))
    train_tasks = [
        t
        for t in itertools.islice(stream, spec.steps * spec.batch * 2)
        if not is_holdout(t, recipe.holdout_mod)
    ][: spec.steps * spec.batch]
    examples = lm.encode_examples(tok, train_tasks)
    eval_tasks = _eval_tasks(recipe)

    stats: dict[str, Any] = {}
    teacher_spec = dataclasses.replace(spec, steps=recipe.teacher_steps or spec.steps)
    for name, shape, model_spec in (
        (TEACHER, recipe.teacher, teacher_spec),
        (UNDISTILLED, recipe.student, spec),
    ):
        t0 = time.monotonic()
        with deterministic_torch(spec.seed, recipe.threads):
            model = lm.new_model(shape, tok.get_vocab_size(), recipe.max_positions)
            log(f"training {name}: {sum(p.numel() for p in model.parameters()):,} parameters")
            final_loss = lm.train(model, examples, model_spec, _prefixed(log, name))
            accuracy = lm.accuracy_by_family(model, tok, eval_tasks)
        log(f"{name}: held-out exact-answer accuracy {accuracy}")
        model.save_pretrained(out / name, safe_serialization=True)
        save_tokenizer(tok, out / name, recipe.max_positions)
        stats[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "steps": model_spec.steps,
            "final_loss": round(final_loss, 5),
            "heldout_accuracy": accuracy,
            "seconds": round(time.monotonic() - t0, 1),
        }
    info = {
        "hash": recipe.digest(),
        "recipe": asdict(recipe),
        "vocab_size": tok.get_vocab_size(),
        "chance": {f: round(CHANCE[f], 5) for f in recipe.families},
        "heldout_tasks": len(eval_tasks),
        "stats": stats,
        "build_seconds": round(time.monotonic() - start, 1),
    }
    (out / "recipe.json").write_text(json.dumps(info, indent=2) + "\n")
    log(f"tiny world built in {info['build_seconds']} s")
