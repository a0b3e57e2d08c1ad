"""What the validator asks each step: seeded prompts from its sources, rendered to token ids.

Sources (``validator.prompt_sources``) are ``synthetic`` (the task families of
``validator.task_families``) and prompt files (:mod:`distill.prompts`), each with a weight
(``"chat.jsonl@3"``). Files are loaded, validated and rendered with the teacher's tokenizer once,
at start: a row that cannot be asked (malformed, special-token text, chat turns without a chat
template, longer than the teacher takes) stops the validator with its file and row, unless
``validator.skip_bad_rows``, which leaves it out and counts it.

Each step's draw is a function of the block-hash seed, the sources and the recent window only:
every slot picks a source by weight from the seed, then a prompt of that source from the seed,
skipping prompts already in the batch (by content digest) and those asked in the last
``validator.prompt_window`` steps. Validators at the same block with the same sources and the
same recent steps ask the same prompts (a validator that just started has an empty window, so
it may differ from its peers for up to that many steps). When a source has nothing left outside
the window, it repeats prompts from the window, and the step counts them in ``Asked.repeats``.
With only the synthetic source and an empty window the draw is ``distill.tasks.generate_tasks``.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from distill.prompts import PromptFile, PromptFileError, load_prompt_file
from distill.tasks import TASKS_VERSION, Task, check_families, iter_tasks
from neurons.validator.store import PromptRow
from subnet.chat import PromptError
from subnet.config import ValidatorConfig
from subnet.engine import EngineInfo
from subnet.errors import ConfigError
from subnet.tokenizer import ModelTokenizer

log = logging.getLogger("subnet.validator.prompts")

SYNTHETIC = "synthetic"
SELECT_VERSION = "prompts/v1"  # bumped when the draw changes, so old seeds never mean new draws
DRAWS_PER_SLOT = 64  # random tries before a file source is scanned in order
SYNTHETIC_TRIES = 4096  # candidates of the endless synthetic stream looked at for one slot


@dataclass(frozen=True)
class SourceSpec:
    name: str  # "synthetic" or a file path
    weight: float


def parse_sources(entries: Sequence[str]) -> list[SourceSpec]:
    """``["synthetic", "data/chat.jsonl@3"]`` -> specs; ConfigError names a bad entry."""
    specs: list[SourceSpec] = []
    for entry in entries:
        name, at, tail = entry.strip().rpartition("@")
        weight = 1.0
        if not at:
            name = tail
        else:
            try:
                weight = float(tail)
            except ValueError:
                name, weight = entry.strip(), 1.0  # an "@" that is part of the path
            if not weight > 0 or weight == float("inf"):
                raise ConfigError(f"validator.prompt_sources: weight of {entry!r} must be > 0")
        if not name:
            raise ConfigError(f"validator.prompt_sources: empty source in {entry!r}")
        if any(s.name == name for s in specs):
            raise ConfigError(f"validator.prompt_sources: {name!r} is listed twice")
        specs.append(SourceSpec(name, weight))
    if not specs:
        raise ConfigError("validator.prompt_sources: expected at least one source")
    return specs


@dataclass(frozen=True)
class Source:
    name: str
    weight: float
    digest: str  # the dataset's digest (synthetic: of the task version and families)
    file: PromptFile | None = None  # None for the synthetic families
    ids: tuple[tuple[int, ...], ...] = ()  # rendered prompt of each file task


@dataclass(frozen=True)
class Asked:
    """One step's prompts: tasks, their ids, and where each came from."""

    tasks: list[Task]
    token_ids: list[list[int]]
    sources: list[Source]
    repeats: int = 0  # prompts asked again inside the window (a source ran out)
    rows: list[PromptRow] = field(default_factory=list)


class PromptSelector:
    """The validator's sources, loaded and checked; :meth:`select` draws one step's prompts."""

    def __init__(
        self,
        sources: Sequence[Source],
        families: Sequence[str],
        tokenizer: ModelTokenizer,
        max_prompt_tokens: int,
    ) -> None:
        self.sources = list(sources)
        self.families = list(families)
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens

    @classmethod
    def load(
        cls,
        entries: Sequence[str],
        families: Sequence[str],
        tokenizer: ModelTokenizer,
        *,
        max_prompt_tokens: int,
        skip_bad_rows: bool = False,
    ) -> PromptSelector:
        """Load every source; ConfigError naming the file and row of the first bad one."""
        sources = []
        for spec in parse_sources(entries):
            if spec.name == SYNTHETIC:
                key = f"{TASKS_VERSION}|{','.join(check_families(families))}"
                digest = hashlib.sha256(key.encode()).hexdigest()
                sources.append(Source(SYNTHETIC, spec.weight, digest))
                continue
            try:
                f = load_prompt_file(spec.name, skip_bad_rows=skip_bad_rows)
            except PromptFileError as e:
                raise ConfigError(f"validator.prompt_sources: {e}") from e
            sources.append(_render_file(spec, f, tokenizer, max_prompt_tokens, skip_bad_rows))
        return cls(sources, families, tokenizer, max_prompt_tokens)

    @classmethod
    def from_config(
        cls, vc: ValidatorConfig, tokenizer: ModelTokenizer, teacher: EngineInfo
    ) -> PromptSelector:
        """The sources of ``validator.prompt_sources``; prompts must leave the teacher room
        for ``validator.max_tokens``."""
        return cls.load(
            vc.prompt_sources,
            vc.task_families,
            tokenizer,
            max_prompt_tokens=teacher.max_model_len - vc.max_tokens,
            skip_bad_rows=vc.skip_bad_rows,
        )

    def summary(self) -> list[dict[str, object]]:
        """What each source is (recorded in the store's meta and logged at start)."""
        return [
            {
                "source": s.name,
                "weight": s.weight,
                "digest": s.digest,
                "prompts": len(s.ids) if s.file else None,
                "skipped": s.file.skipped if s.file else 0,
                "chat": s.file.chat if s.file else False,
            }
            for s in self.sources
        ]

    def encode(self, task: Task) -> list[int]:
        return self.tokenizer.encode_prompt(task.content)

    def select(self, seed: str, n: int, recent: set[str] | frozenset[str] = frozenset()) -> Asked:
        """``n`` distinct prompts for the step seeded by ``seed`` (see the module docstring)."""
        pick = random.Random(_seed_int(f"{SELECT_VERSION}|{seed}|source"))
        weights = [s.weight for s in self.sources]
        streams = {s.name: self._stream(s, seed) for s in self.sources}
        tasks: list[Task] = []
        ids: list[list[int]] = []
        chosen: list[Source] = []
        taken: set[str] = set()
        repeats = 0
        for _ in range(n):
            source = (
                self.sources[0]
                if len(self.sources) == 1
                else pick.choices(self.sources, weights)[0]
            )
            found = _draw(streams[source.name], taken, recent, _limit(source))
            if found is None:  # this source has nothing left: any source with anything left
                for other in self.sources:
                    found = _draw(self._stream(other, seed), taken, recent, _limit(other))
                    if found is not None:
                        source = other
                        break
            if found is None:
                raise PromptError(f"cannot draw {n} distinct prompts from the sources")
            task, token_ids, repeated = found
            repeats += repeated
            taken.add(task.digest)
            tasks.append(task)
            ids.append(token_ids)
            chosen.append(source)
        if repeats:
            log.warning(
                "%d prompts repeated inside the no-repeat window (sources ran out)", repeats
            )
        rows = [
            PromptRow(i, t.task_id, s.name, s.digest, t.digest)
            for i, (t, s) in enumerate(zip(tasks, chosen, strict=True))
        ]
        return Asked(tasks, ids, chosen, repeats, rows)

    def _stream(self, source: Source, seed: str) -> Iterator[tuple[Task, list[int]]]:
        """Candidates of one source for this seed: synthetic tasks as ``generate_tasks``
        draws them; file prompts drawn at random, then every prompt from a seeded offset."""
        if source.file is None:
            for task in iter_tasks(seed, self.families):
                yield task, self.encode(task)
            return
        tasks, m = source.file.tasks, len(source.file.tasks)
        # keyed by the dataset's digest, not its path: the same file draws the same everywhere
        rng = random.Random(_seed_int(f"{SELECT_VERSION}|{seed}|{source.digest}"))
        for _ in range(DRAWS_PER_SLOT):
            i = rng.randrange(m)
            yield tasks[i], list(source.ids[i])
        start = rng.randrange(m)
        for i in itertools.chain(range(start, m), range(start)):
            yield tasks[i], list(source.ids[i])


def _draw(
    stream: Iterator[tuple[Task, list[int]]],
    taken: set[str],
    recent: set[str] | frozenset[str],
    limit: int | None,
) -> tuple[Task, list[int], int] | None:
    """The stream's next prompt not in the batch and, if possible, not recent (third: 1 when
    it is a repeat), among at most ``limit`` candidates (a file's stream ends by itself after
    one pass); None when the stream has nothing outside the batch."""
    fallback = None
    for task, ids in itertools.islice(stream, limit):
        if task.digest in taken:
            continue
        if task.digest not in recent:
            return task, ids, 0
        fallback = fallback or (task, ids)
    return None if fallback is None else (*fallback, 1)


def _render_file(
    spec: SourceSpec,
    f: PromptFile,
    tokenizer: ModelTokenizer,
    max_prompt_tokens: int,
    skip_bad_rows: bool,
) -> Source:
    """Every prompt of ``f`` as the teacher's ids; a prompt that cannot be asked is a bad row."""
    keep: list[int] = []
    ids: list[tuple[int, ...]] = []
    skipped = 0
    for i, task in enumerate(f.tasks):
        try:
            rendered = tokenizer.encode_prompt(task.content)
            if len(rendered) > max_prompt_tokens:
                raise PromptError(
                    f"{len(rendered)} prompt tokens; the teacher takes {max_prompt_tokens} "
                    "with validator.max_tokens"
                )
        except PromptError as e:
            if not skip_bad_rows:
                raise ConfigError(f"validator.prompt_sources: {f.where(i)}: {e}") from None
            skipped += 1
            continue
        keep.append(i)
        ids.append(tuple(rendered))
    if not keep:
        raise ConfigError(f"validator.prompt_sources: {f.path}: no prompt the teacher can take")
    if skipped or f.skipped:
        log.warning(
            "%s: %d bad rows left out (validator.skip_bad_rows); first: %s",
            f.path,
            f.skipped + skipped,
            "; ".join(f.reasons[:2]) or "prompts the teacher cannot take",
        )
    kept = PromptFile(
        f.path,
        f.kind,
        f.digest,
        tuple(f.tasks[i] for i in keep),
        tuple(f.rows[i] for i in keep),
        f.skipped + skipped,
        f.reasons,
    )
    return Source(spec.name, spec.weight, f.digest, kept, tuple(ids))


def _limit(source: Source) -> int | None:
    return SYNTHETIC_TRIES if source.file is None else None


def _seed_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")
