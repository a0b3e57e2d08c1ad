"""What a cheating miner can work out about a validator's request from public information alone.

For one request (prompt token ids and the sampling seed the validator asked for) it finds:

* the validator's step seed: the hash of a recent block, the one whose
  ``query_seed(hash, i)`` equals the request's sampling seed for some task index ``i``
  (``neurons.validator.judge.query_seed``: public code, public block hashes);
* the task: the step's tasks regenerated from that seed with the subnet's published task
  families (``validator.task_families`` of its ``subnet.toml``), matched on the prompt ids; or,
  for prompts from the published prompt files (``validator.prompt_sources``), the file's row
  with those ids (every row is rendered once, so no step's draw needs reproducing);
* whether the validator's *old* selection rule would check it: ``sha256(seed|spot|uid|task)``
  below ``verify.spot_check_fraction`` (:func:`old_public_rule`; the rule the validator used
  before its draws came from a secret, kept here verbatim so the demo shows it no longer works).

A demo fixture for ``adversary-selective`` (never imported by the miner).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from distill.tasks import generate_tasks
from neurons.validator.judge import query_seed
from neurons.validator.prompts import SYNTHETIC, PromptSelector
from subnet.config import ValidatorConfig
from subnet.tokenizer import ModelTokenizer

BlockHash = Callable[[int], Awaitable[str | None]]
Head = Callable[[], Awaitable[int]]


def old_public_rule(seed: str, key: str, task_id: str, fraction: float) -> bool:
    """The validator's former spot-check selection: anyone could compute it."""
    if fraction >= 1.0:
        return True
    rng = random.Random(hashlib.sha256(f"{seed}|spot|{key}|{task_id}".encode()).digest())
    return rng.random() < fraction


def published_prompts(
    vc: ValidatorConfig, tokenizer: ModelTokenizer
) -> tuple[tuple[str, ...], dict[tuple[int, ...], str]]:
    """What a subnet's published ``[validator]`` settings say its validators ask: the synthetic
    families (empty when ``synthetic`` is not a source) and, for every row of its prompt files,
    the ids validators send for it -> its task id."""
    selector = PromptSelector.load(
        vc.prompt_sources,
        vc.task_families,
        tokenizer,
        max_prompt_tokens=1 << 30,  # rows the validator leaves out are never asked anyway
        skip_bad_rows=True,
    )
    files = {
        ids: task.task_id
        for source in selector.sources
        if source.file is not None
        for task, ids in zip(source.file.tasks, source.ids, strict=True)
    }
    synthetic = any(s.name == SYNTHETIC for s in selector.sources)
    return (tuple(vc.task_families) if synthetic else ()), files


@dataclass
class PublicOracle:
    """See the module docstring. ``encode`` turns a prompt into the teacher's token ids;
    ``files`` maps the ids of every prompt-file row to its task id. ``families`` is empty when
    the subnet asks no synthetic tasks."""

    head: Head
    block_hash: BlockHash
    uid: Callable[[], Awaitable[int | None]]
    families: Sequence[str]
    tasks_per_step: int
    fraction: float
    encode: Callable[[str], list[int]]
    files: Mapping[tuple[int, ...], str] = field(default_factory=dict)
    lookback: int = 64
    close: Callable[[], Awaitable[None]] | None = None
    _steps: dict[str, list[tuple[tuple[int, ...], str]]] = field(default_factory=dict)
    _hashes: dict[int, str | None] = field(default_factory=dict)

    async def believed_checked(
        self, prompt_ids: Sequence[int], sampling_seed: int | None
    ) -> bool | None:
        """True/False: the old rule's verdict on this request; None when it cannot tell (then
        a careful cheater answers honestly)."""
        if sampling_seed is None:
            return None
        uid = await self.uid()
        if uid is None:
            return None
        prompt = tuple(int(t) for t in prompt_ids)
        head = await self.head()
        for block in range(head, max(head - self.lookback, -1), -1):
            h = await self._hash(block)
            if h is None:
                continue
            for i in range(self.tasks_per_step):
                if query_seed(h, i) != sampling_seed:
                    continue
                task_id = self.files.get(prompt) or next(
                    (t for ids, t in self._tasks(h) if ids == prompt), None
                )
                if task_id is not None:
                    return old_public_rule(h, str(uid), task_id, self.fraction)
        return None

    async def _hash(self, block: int) -> str | None:
        if block not in self._hashes:
            self._hashes[block] = await self.block_hash(block)
            if len(self._hashes) > 4 * self.lookback:
                self._hashes.pop(min(self._hashes))
        return self._hashes[block]

    def _tasks(self, seed: str) -> list[tuple[tuple[int, ...], str]]:
        if not self.families:
            return []
        if seed not in self._steps:
            tasks = generate_tasks(seed, self.tasks_per_step, self.families)
            self._steps[seed] = [(tuple(self.encode(t.prompt)), t.task_id) for t in tasks]
            if len(self._steps) > 4 * self.lookback:
                self._steps.pop(next(iter(self._steps)))
        return self._steps[seed]
