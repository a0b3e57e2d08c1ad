"""Seeded synthetic task families with ground truth (prompt files: :mod:`distill.prompts`).

Validators draw fresh prompts every step from a public seed (a block hash), so every validator
asks the same questions and anyone can re-derive them. The families are ones a ~1M-parameter
model learns in minutes, so the tiny world's teacher is visibly better than chance.

Rendering makes the answer boundary explicit: every prompt ends with ``" ="`` and every answer
starts with a space (``"add 12 34 ="`` -> ``" 46"``), so the tokenizer never merges across the
boundary and a model stops after the answer with EOS. Lists are space-separated single symbols
so each element is one token.

Pure: no I/O, no globals beyond constant tables. (The real world's questions are a chat
dataset file, ``prompts.jsonl`` in the world, asked through ``validator.prompt_sources``.)
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from subnet.chat import ChatMessage, messages_json

#: Bumped when rendering or sampling changes, so old seeds never silently mean new prompts.
TASKS_VERSION = "tasks/v1"

#: Every prompt of a synthetic family ends with this; answers start with a space.
ANSWER_MARK = " ="

_DIGITS = "0123456789"
_LETTERS = "abcdefgh"


@dataclass(frozen=True)
class Task:
    """One prompt: text (``prompt``) or chat turns (``messages``, then ``prompt`` is "").

    ``answer`` is the ground truth (None for open prompts from a dataset file).
    """

    family: str  # a synthetic family, or the name of the prompt source it came from
    prompt: str
    answer: str | None
    task_id: str
    messages: tuple[ChatMessage, ...] = ()

    @property
    def content(self) -> str | tuple[ChatMessage, ...]:
        """What the model is asked: the turns of a chat prompt, else the text."""
        return self.messages or self.prompt

    @property
    def digest(self) -> str:
        """sha256 of the content alone (not the family or answer): equal prompts are equal,
        whichever source or family they came from."""
        return hashlib.sha256(content_key(self.content).encode()).hexdigest()


def content_key(content: str | Sequence[ChatMessage]) -> str:
    """Canonical text of a prompt's content (what ids and digests are derived from)."""
    if isinstance(content, str):
        return json.dumps({"prompt": content}, ensure_ascii=False)
    return '{"messages":' + messages_json(content) + "}"


# --- families: each draws (prompt, answer) from an rng ------------------------------------


def _add(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randrange(100), rng.randrange(100)
    return f"add {a} {b}{ANSWER_MARK}", f" {a + b}"


def _sort(rng: random.Random) -> tuple[str, str]:
    xs = [rng.choice(_DIGITS) for _ in range(rng.randint(3, 6))]
    return f"sort {' '.join(xs)}{ANSWER_MARK}", " " + " ".join(sorted(xs))


def _reverse(rng: random.Random) -> tuple[str, str]:
    xs = [rng.choice(_LETTERS) for _ in range(rng.randint(3, 6))]
    return f"reverse {' '.join(xs)}{ANSWER_MARK}", " " + " ".join(reversed(xs))


def _count(rng: random.Random) -> tuple[str, str]:
    xs = [rng.choice(_LETTERS[:4]) for _ in range(rng.randint(3, 8))]
    target = rng.choice(_LETTERS[:4])
    return f"count {target} in {' '.join(xs)}{ANSWER_MARK}", f" {xs.count(target)}"


def _copy(rng: random.Random) -> tuple[str, str]:
    xs = [rng.choice(_LETTERS + _DIGITS) for _ in range(rng.randint(3, 6))]
    return f"copy {' '.join(xs)}{ANSWER_MARK}", " " + " ".join(xs)


FAMILIES: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "add": _add,
    "sort": _sort,
    "reverse": _reverse,
    "count": _count,
    "copy": _copy,
}

#: Probability that a uniformly random answer of the right shape is exactly right, per family
#: (what "better than chance" is measured against): add has 199 sums, count 9 values, and the
#: list families at least 8**3 (sort: 220 sorted triples of digits is the smallest case).
CHANCE: dict[str, float] = {
    "add": 1 / 199,
    "sort": 1 / 220,
    "reverse": 1 / 8**3,
    "count": 1 / 9,
    "copy": 1 / 18**3,
}


# --- seeded batches ----------------------------------------------------------------------


def seed_bytes(seed: int | bytes | str) -> bytes:
    """Canonical bytes of a seed; the type is part of it, so ``12`` and ``"12"`` differ.

    Strings are used as given (a block hash hex ``"0xab.."`` is a string seed, not its bytes).
    """
    if isinstance(seed, bool) or not isinstance(seed, int | bytes | str):
        raise TypeError(f"seed must be int, bytes or str, got {type(seed).__name__}")
    if isinstance(seed, int):
        return b"i:" + str(seed).encode()
    if isinstance(seed, bytes):
        return b"b:" + seed
    return b"s:" + seed.encode()


def task_id(family: str, prompt: str) -> str:
    """Content id: the same prompt has the same id in every batch and every validator."""
    digest = hashlib.sha256(f"{family}\x00{prompt}".encode()).hexdigest()
    return f"{family}-{digest[:16]}"


def _rng(seed: int | bytes | str) -> random.Random:
    digest = hashlib.sha256(TASKS_VERSION.encode() + b"|" + seed_bytes(seed)).digest()
    return random.Random(int.from_bytes(digest, "big"))


def check_families(families: Sequence[str] | None) -> list[str]:
    """The family names to draw from (all when None); ValueError naming any unknown one."""
    names = list(FAMILIES) if families is None else list(families)
    if not names:
        raise ValueError("families must not be empty")
    unknown = [f for f in names if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown task families {unknown}; known: {sorted(FAMILIES)}")
    return names


def iter_tasks(seed: int | bytes | str, families: Sequence[str] | None = None) -> Iterable[Task]:
    """Endless seeded stream of tasks (duplicates possible); for training data."""
    names = check_families(families)
    rng = _rng(seed)
    while True:
        family = rng.choice(names)
        prompt, answer = FAMILIES[family](rng)
        yield Task(family, prompt, answer, task_id(family, prompt))


def generate_tasks(
    seed: int | bytes | str, n: int, families: Sequence[str] | None = None
) -> list[Task]:
    """``n`` distinct tasks fully determined by ``seed`` (validators pass a block hash hex).

    Families are drawn uniformly at random per task; a prompt already in the batch is redrawn.
    Raises ValueError if the families cannot supply ``n`` distinct prompts.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    seen: set[str] = set()
    out: list[Task] = []
    budget = 20 * n + 100  # redraws allowed before we call the request impossible
    for task in iter_tasks(seed, families):
        if len(out) == n:
            break
        budget -= 1
        if budget < 0:
            raise ValueError(f"cannot draw {n} distinct prompts from families {families}")
        if task.prompt not in seen:
            seen.add(task.prompt)
            out.append(task)
    return out


def render(task: Task) -> str:
    """Prompt followed by its ground-truth answer: the text a model is trained on."""
    return task.prompt + (task.answer or "")


def check_answer(task: Task, completion_text: str) -> bool:
    """Exact match of the completion with the ground truth, both stripped of outer whitespace.

    Strip only: a trailing EOS is not text, and the leading space is part of the format. A
    task without ground truth is never "correct" (the caller scores it by other means).
    """
    if task.answer is None:
        return False
    return completion_text.strip() == task.answer.strip()
