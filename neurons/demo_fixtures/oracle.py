"""What a cheating miner can work out about a validator's request from public information alone.

For one request (prompt token ids and the sampling seed the validator asked for) it finds:

* the validator's step seed: the hash of a recent block, the one whose
  ``query_seed(hash, i)`` equals the request's sampling seed for some task index ``i``
  (``neurons.validator.judge.query_seed``: public code, public block hashes);
* the task: the step's tasks regenerated from that seed with the subnet's published task
  families (``validator.task_families`` of its ``subnet.toml``), matched on the prompt ids;
* whether the validator's *old* selection rule would check it: ``sha256(seed|spot|uid|task)``
  below ``verify.spot_check_fraction`` (:func:`old_public_rule`; the rule the validator used
  before its draws came from a secret, kept here verbatim so the demo shows it no longer works).

A demo fixture for ``adversary-selective`` (never imported by the miner).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from distill.tasks import generate_tasks
from neurons.validator.judge import query_seed

BlockHash = Callable[[int], Awaitable[str | None]]
Head = Callable[[], Awaitable[int]]


def old_public_rule(seed: str, key: str, task_id: str, fraction: float) -> bool:
    """The validator's former spot-check selection: anyone could compute it."""
    if fraction >= 1.0:
        return True
    rng = random.Random(hashlib.sha256(f"{seed}|spot|{key}|{task_id}".encode()).digest())
    return rng.random() < fraction


@dataclass
class PublicOracle:
    """See the module docstring. ``encode`` turns a prompt into the teacher's token ids."""

    head: Head
    block_hash: BlockHash
    uid: Callable[[], Awaitable[int | None]]
    families: Sequence[str]
    tasks_per_step: int
    fraction: float
    encode: Callable[[str], list[int]]
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
                for ids, task_id in self._tasks(h):
                    if ids == prompt:
                        return old_public_rule(h, str(uid), task_id, self.fraction)
        return None

    async def _hash(self, block: int) -> str | None:
        if block not in self._hashes:
            self._hashes[block] = await self.block_hash(block)
            if len(self._hashes) > 4 * self.lookback:
                self._hashes.pop(min(self._hashes))
        return self._hashes[block]

    def _tasks(self, seed: str) -> list[tuple[tuple[int, ...], str]]:
        if seed not in self._steps:
            tasks = generate_tasks(seed, self.tasks_per_step, self.families)
            self._steps[seed] = [(tuple(self.encode(t.prompt)), t.task_id) for t in tasks]
            if len(self._steps) > 4 * self.lookback:
                self._steps.pop(next(iter(self._steps)))
        return self._steps[seed]
