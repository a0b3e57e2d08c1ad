"""The tiny world: a deterministic tokenizer, teacher and undistilled student, cached by recipe.

Tests, CI and the localnet need a real teacher that vLLM, transformers and the trainer load
like any Hugging Face model, without a model hub. :func:`tiny_world` builds one in about five
minutes on 2 CPU cores the first time (byte-level BPE tokenizer, a ~0.9M-parameter 4-layer Llama
teacher trained on the add/sort/reverse families of :mod:`distill.tasks`, a ~0.14M-parameter
2-layer "undistilled" student trained the same way, and the distilled student) and returns
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

import dataclasses
import hashlib
import importlib.metadata
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.cache import cache_root, ensure_dir
from distill.tasks import CHANCE, TASKS_VERSION, Task, iter_tasks, render

#: Bumped whenever the build code changes what it produces, so stale caches are not reused.
RECIPE_VERSION = "tiny/v1"

TOKENIZER, TEACHER, UNDISTILLED, DISTILLED = (
    "tokenizer",
    "teacher",
    "student-undistilled",
    "student-distilled",
)


@dataclass(frozen=True)
class ModelSpec:
    """Llama shape; head_dim = hidden / heads must be >= 32 for vLLM's CPU attention."""

    layers: int
    hidden: int
    heads: int
    intermediate: int


@dataclass(frozen=True)
class TrainSpec:
    steps: int
    batch: int
    lr: float
    warmup: int
    seed: int


@dataclass(frozen=True)
class TinyRecipe:
    """Everything that determines the world's bytes; its hash names the cache directory."""

    # add/sort/reverse only: there the teacher's uncertainty (on add) is something a 2-layer
    # student can copy, so distillation clearly beats cross-entropy (issue 7: held-out forward
    # KL 0.055 vs 0.153, seed 0). On count/copy the student cannot compute what the teacher
    # does, and the gap closes to seed noise. ``distill.tasks`` keeps all five families.
    families: tuple[str, ...] = ("add", "sort", "reverse")
    tokenizer_seed: str = "tiny/tokenizer"
    tokenizer_texts: int = 20_000
    vocab_size: int = 512  # an upper bound: task text yields fewer merges
    max_positions: int = 256
    train_seed: str = "tiny/train"
    eval_seed: str = "tiny/eval"
    eval_per_family: int = 100
    holdout_mod: int = 10  # prompts whose hash is 0 mod this are never trained on
    teacher: ModelSpec = ModelSpec(layers=4, hidden=128, heads=4, intermediate=384)
    student: ModelSpec = ModelSpec(layers=2, hidden=64, heads=2, intermediate=192)
    # 1000 steps, not more: the teacher is still unsure on add (~13 % exact), which is what a
    # student copies by distillation and cannot learn from one-hot text; trained to 1500 it
    # is near-certain (96 %) and which student wins hinges on the init seed.
    train: TrainSpec = TrainSpec(steps=1000, batch=64, lr=3e-3, warmup=50, seed=0)
    threads: int = 1

    def digest(self) -> str:
        """Content hash of the recipe, the code version and the library versions it ran on."""
        body = dataclasses.asdict(self)
        body["versions"] = {
            "recipe": RECIPE_VERSION,
            "tasks": TASKS_VERSION,
            **{
                lib: importlib.metadata.version(lib)
                for lib in ("torch", "transformers", "tokenizers")
            },
        }
        blob = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class TinyWorld:
    """Paths of one built world; ``built`` says whether this call built it (False: cache hit)."""

    root: Path
    built: bool = False

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / TOKENIZER

    @property
    def teacher(self) -> Path:
        return self.root / TEACHER

    @property
    def undistilled(self) -> Path:
        return self.root / UNDISTILLED

    def distilled_path(self) -> Path:
        """Where the distilled student lives once ``distill.train`` has registered it."""
        return self.root / DISTILLED

    @property
    def distilled(self) -> Path | None:
        path = self.distilled_path()
        return path if path.is_dir() else None

    def info(self) -> dict[str, Any]:
        """The contents of ``recipe.json`` (recipe, hash, stats, accuracies)."""
        return json.loads((self.root / "recipe.json").read_text())  # type: ignore[no-any-return]

    def ensure_model(self, name: str, build: Callable[[Path], object], force: bool = False) -> Path:
        """Add a model directory ``root/name`` built once by ``build(tmp_dir)``; returns it.

        The hook for the distillation trainer: ``world.ensure_model(DISTILLED, train_into)``.
        Atomic and locked like the world itself; the builder must write a complete HF model dir
        (copy the tokenizer files from ``tokenizer_dir``).
        """
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad model name {name!r}")
        ensure_dir(self.root / name, build, force=force)
        return self.root / name


def tiny_world(cache: Path | None = None) -> TinyWorld:
    """The default tiny world with all three models (distilled student included), built on
    first use."""
    from distill.distilled import ensure_distilled

    world = build_tiny_world(cache=cache)
    ensure_distilled(world)
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


# --- the build ------------------------------------------------------------------------------


def is_holdout(task: Task, mod: int) -> bool:
    """True for the fixed slice of prompt space kept out of training."""
    return int(task.task_id.rsplit("-", 1)[1], 16) % mod == 0


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
    for name, shape in ((TEACHER, recipe.teacher), (UNDISTILLED, recipe.student)):
        t0 = time.monotonic()
        lm.setup_torch(spec.seed, recipe.threads)
        model = lm.new_model(shape, tok.get_vocab_size(), recipe.max_positions)
        log(f"training {name}: {sum(p.numel() for p in model.parameters()):,} parameters")
        final_loss = lm.train(model, examples, spec, _prefixed(log, name))
        accuracy = lm.accuracy_by_family(model, tok, eval_tasks)
        log(f"{name}: held-out exact-answer accuracy {accuracy}")
        model.save_pretrained(out / name, safe_serialization=True)
        save_tokenizer(tok, out / name, recipe.max_positions)
        stats[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "steps": spec.steps,
            "final_loss": round(final_loss, 5),
            "heldout_accuracy": accuracy,
            "seconds": round(time.monotonic() - t0, 1),
        }
    info = {
        "hash": recipe.digest(),
        "recipe": dataclasses.asdict(recipe),
        "vocab_size": tok.get_vocab_size(),
        "chance": {f: round(CHANCE[f], 5) for f in recipe.families},
        "heldout_tasks": len(eval_tasks),
        "stats": stats,
        "build_seconds": round(time.monotonic() - start, 1),
    }
    (out / "recipe.json").write_text(json.dumps(info, indent=2) + "\n")
    log(f"tiny world built in {info['build_seconds']} s")
