"""The step's pipelining: answers are judged and teacher-scored while the rest still arrive.

A step used to wait for the slowest miner before the teacher scored anything, so the teacher
idled through the queries and the queries idled through the scoring. Here each answer enters
the pipeline the moment its query returns:

1. **gate** (a worker thread): the cheap per-answer gates on the miner's own claims;
2. **teacher**: survivors join the next micro-batch of the teacher's ``score``. One batch runs at
   a time; whatever arrived meanwhile (up to ``max_batch``) forms the next one, so batches are
   small while answers trickle in and grow when they flood, with no timer to tune;
3. **finish**: each scored batch gets its divergences and sub-scores (the step's callback,
   vectorised across the batch) while the teacher already scores the next batch.

Stages run in arrival order and never raise for one answer's sake (the callbacks own that); an
exception in a callback is a bug and is re-raised by :meth:`ScoringPipeline.results`. CPU work
runs off the event loop, which keeps reading miners' streams (their timing is measured on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from neurons.validator.judge import Judged
from neurons.validator.miner_client import MinerAnswer
from subnet.engine import Engine, Scored

T = TypeVar("T")
_END = object()


class MicroBatcher(Generic[T]):
    """Runs ``process(batch)`` on items submitted one at a time: one batch at a time, each of
    whatever arrived while the previous one ran (at most ``max_batch``, and at least
    ``min_batch`` until :meth:`inputs_done`: a pass has a fixed cost, so a lone early answer
    waits for a few more rather than taking the engine for itself)."""

    def __init__(
        self, process: Callable[[list[T]], Awaitable[None]], max_batch: int, min_batch: int = 1
    ) -> None:
        if not 1 <= min_batch <= max_batch:
            raise ValueError(f"need 1 <= min_batch <= max_batch, got {min_batch}, {max_batch}")
        self._process, self._max, self._min = process, max_batch, min_batch
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._more = asyncio.Event()  # set on each submit and when inputs are done
        self._done = False
        self.batches: list[int] = []  # sizes, for the step's record

    def submit(self, item: T) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        self._queue.put_nowait(item)
        self._more.set()

    def inputs_done(self) -> None:
        """No more items will come: whatever waits is processed, however few."""
        self._done = True
        self._more.set()

    async def join(self) -> None:
        """Wait until everything submitted is processed; re-raises a ``process`` error."""
        self.inputs_done()
        if self._task is None:
            return
        self._queue.put_nowait(_END)
        await self._task

    async def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        ending = False
        while not ending:
            while self._queue.qsize() < self._min and not self._done:
                self._more.clear()
                await self._more.wait()
            first = await self._queue.get()
            if first is _END:
                return
            batch: list[T] = [first]  # type: ignore[list-item]
            while len(batch) < self._max and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is _END:
                    ending = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            self.batches.append(len(batch))
            await self._process(batch)


class ScoringPipeline:
    """Gate -> teacher micro-batches -> finish, for the answers of one step (module docstring).

    ``gate(answer)`` builds the answer's :class:`Judged` and runs the cheap gates (called on a
    worker thread); survivors are scored by ``teacher`` against ``prompts[judged.task]``;
    ``finish(pairs)`` receives each scored batch as ``(judged, teacher_scored)`` pairs.
    """

    def __init__(
        self,
        *,
        gate: Callable[[MinerAnswer], Judged],
        teacher: Engine,
        prompts: Sequence[Sequence[int]],
        k: int,
        finish: Callable[[list[tuple[Judged, Scored]]], Awaitable[None]],
        max_batch: int,
        min_batch: int = 1,
    ) -> None:
        self._gate, self._teacher, self._prompts, self._k = gate, teacher, prompts, k
        self._finish = finish
        self._judged: dict[int, Judged] = {}
        self._scoring = MicroBatcher[MinerAnswer](self._score, max_batch, min_batch)
        self._finishing = MicroBatcher[tuple[Judged, Scored]](finish, max_batch)
        self.teacher_seconds = 0.0  # time the teacher spent in ``score`` (its busy time)
        self.teacher_tokens = 0
        self.last_scored_at = 0.0  # perf_counter when the last batch left the teacher

    @property
    def batch_sizes(self) -> list[int]:
        return self._scoring.batches

    def submit(self, answer: MinerAnswer) -> None:
        self._scoring.submit(answer)

    def answers_done(self) -> None:
        """Every answer is in: score what waits without waiting for ``min_batch``."""
        self._scoring.inputs_done()

    async def results(self, answers: Sequence[MinerAnswer]) -> list[Judged]:
        """Every answer's :class:`Judged`, in the order of ``answers`` (each submitted once)."""
        try:
            await self._scoring.join()
            await self._finishing.join()
        except BaseException:
            await self.cancel()
            raise
        return [self._judged[id(a)] for a in answers]

    async def cancel(self) -> None:
        """Stop both stages (the step failed or was cancelled)."""
        await self._scoring.cancel()
        await self._finishing.cancel()

    async def _score(self, batch: list[MinerAnswer]) -> None:
        judged = await asyncio.to_thread(lambda: [self._gate(a) for a in batch])
        for a, j in zip(batch, judged, strict=True):
            self._judged[id(a)] = j
        alive = [j for j in judged if j.ok]
        if not alive:
            return
        t0 = time.perf_counter()
        scored = await self._teacher.score(
            [self._prompts[j.task] for j in alive],
            [j.answer.token_ids.tolist() for j in alive],
            self._k,
        )
        self.last_scored_at = time.perf_counter()
        self.teacher_seconds += self.last_scored_at - t0
        self.teacher_tokens += sum(len(j.answer.token_ids) for j in alive)
        for pair in zip(alive, scored, strict=True):
            self._finishing.submit(pair)
