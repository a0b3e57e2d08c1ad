"""Adversarial miners as Engine wrappers, so the real miner node can serve them in tests.

``wrap_engine(kind, engine, ...)`` returns an :class:`~subnet.engine.Engine` the miner serves
unchanged (same HTTP app, same signatures, same committed identity):

* ``wrong-model``: commits the identity of one model but answers with another (``other``).
* ``fabricated``: samples honestly from its model but reports teacher-like distributions: the
  teacher's own top-k at those positions when ``other`` (the teacher) is given, else its own
  top-k sharpened. Consistent enough to pass the format gate; only a spot check sees it.
* ``garbage``: well-framed responses whose arrays are nonsense (ids outside the vocabulary,
  positive and unsorted logprobs).
* ``slow``: correct answers, ``delay`` seconds late (past any sane validator timeout).
* ``selective``: fabricates like ``fabricated``, but only on the answers it believes will not
  be spot-checked (``oracle``: every piece of public information, the old public selection
  rule included, see ``oracle.py``); elsewhere it answers honestly with its committed model.

Fixtures for the validator's tests (ARCHITECTURE.md §5); never run them on a real network.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from subnet.engine import Completion, Engine, EngineInfo, SamplingParams, Scored
from subnet.engine.types import TokenIds

KINDS = ("wrong-model", "fabricated", "garbage", "slow", "selective")
log = logging.getLogger("subnet.demo.adversary")


class Oracle(Protocol):
    async def believed_checked(
        self, prompt_ids: Sequence[int], sampling_seed: int | None
    ) -> bool | None: ...


class _Wrapper:
    def __init__(self, engine: Engine) -> None:
        self.inner = engine

    @property
    def info(self) -> EngineInfo:
        return self.inner.info

    async def generate(
        self, prompts: Sequence[TokenIds], params: SamplingParams
    ) -> list[Completion]:
        return [self.corrupt(c) for c in await self.inner.generate(prompts, params)]

    def corrupt(self, c: Completion) -> Completion:
        return c

    async def score(
        self, prompts: Sequence[TokenIds], completions: Sequence[TokenIds], k: int
    ) -> list[Scored]:
        return await self.inner.score(prompts, completions, k)

    async def close(self) -> None:
        await self.inner.close()


class Fabricated(_Wrapper):
    """Real tokens, fake distributions: the teacher's (``teacher``) or sharpened own ones."""

    def __init__(self, engine: Engine, teacher: Engine | None = None, sharpen: float = 4.0) -> None:
        super().__init__(engine)
        self.teacher = teacher
        self.sharpen = sharpen

    async def generate(
        self, prompts: Sequence[TokenIds], params: SamplingParams
    ) -> list[Completion]:
        out = await self.inner.generate(prompts, params)
        k = params.top_logprobs
        if self.teacher is None or k == 0:
            return [self.corrupt(c) for c in out]
        scored = await self.teacher.score(prompts, [c.token_ids.tolist() for c in out], k)
        return [
            self._claim(c, s.top_ids, s.top_logprobs.astype(np.float64))
            for c, s in zip(out, scored, strict=True)
        ]

    def corrupt(self, c: Completion) -> Completion:
        if c.top_logprobs.shape[1] == 0:
            return c
        lp = c.top_logprobs.astype(np.float64) * self.sharpen
        lp = lp - np.logaddexp.reduce(lp, axis=1, keepdims=True)  # all mass on the top-k
        return self._claim(c, c.top_ids, lp)

    @staticmethod
    def _claim(c: Completion, ids: np.ndarray, lp: np.ndarray) -> Completion:
        """Report ``ids``/``lp`` as the top-k, with sampled logprobs consistent with them."""
        listed = ids == c.token_ids[:, None]
        sampled = np.where(
            listed.any(axis=1),
            np.where(listed, lp, 0.0).sum(axis=1),
            np.minimum(c.sampled_logprobs, lp[:, -1]),
        )
        return dataclasses.replace(
            c,
            top_ids=ids.astype(np.int64),
            top_logprobs=lp.astype(np.float32),
            sampled_logprobs=sampled.astype(np.float32),
        )


class Selective(Fabricated):
    """Fabricates (the teacher's distributions) only where ``oracle`` says "not checked"."""

    def __init__(self, engine: Engine, teacher: Engine | None, oracle: Oracle) -> None:
        super().__init__(engine, teacher)
        self.oracle = oracle
        self.fabricated = self.honest = 0

    async def generate(
        self, prompts: Sequence[TokenIds], params: SamplingParams
    ) -> list[Completion]:
        out = await self.inner.generate(prompts, params)
        k = params.top_logprobs
        believed = [await self.oracle.believed_checked(list(p), params.seed) for p in prompts]
        fake = [i for i, b in enumerate(believed) if b is False]
        if self.teacher is None or k == 0 or not fake:
            self.honest += len(out)
            return out
        scored = await self.teacher.score(
            [prompts[i] for i in fake], [out[i].token_ids.tolist() for i in fake], k
        )
        for i, sc in zip(fake, scored, strict=True):
            out[i] = self._claim(out[i], sc.top_ids, sc.top_logprobs.astype(np.float64))
        self.fabricated += len(fake)
        self.honest += len(out) - len(fake)
        log.info(
            "selective: fabricated %d of %d answers so far (believed unchecked)",
            self.fabricated,
            self.fabricated + self.honest,
        )
        return out

    async def close(self) -> None:
        closer = getattr(self.oracle, "close", None)
        if closer is not None:
            await closer()
        await super().close()


class Garbage(_Wrapper):
    """Ids outside the vocabulary and positive, unsorted logprobs in every top-k row."""

    def corrupt(self, c: Completion) -> Completion:
        n, k = c.top_ids.shape
        ids = np.full((n, max(k, 1)), self.info.vocab_size + 7, dtype=np.int64)
        ids += np.arange(ids.shape[1])
        lps = np.tile(np.linspace(0.5, 3.0, ids.shape[1], dtype=np.float32), (n, 1))
        return dataclasses.replace(
            c, top_ids=ids, top_logprobs=lps, sampled_logprobs=np.full(n, 2.0, dtype=np.float32)
        )


class Slow(_Wrapper):
    def __init__(self, engine: Engine, delay: float) -> None:
        super().__init__(engine)
        self.delay = delay

    async def generate(
        self, prompts: Sequence[TokenIds], params: SamplingParams
    ) -> list[Completion]:
        await asyncio.sleep(self.delay)
        return await self.inner.generate(prompts, params)


class WrongModel(_Wrapper):
    """Answers with ``other`` while the node keeps the committed model's identity."""

    def __init__(self, committed: Engine, other: Engine) -> None:
        super().__init__(other)
        self.committed = committed

    async def close(self) -> None:
        await self.committed.close()  # ``other`` belongs to the caller


def wrap_engine(
    kind: str,
    engine: Engine,
    *,
    other: Engine | None = None,
    delay: float = 60.0,
    oracle: Oracle | None = None,
) -> Engine:
    """The adversary ``kind`` around ``engine``; ``other`` is the model ``wrong-model`` really
    serves (required) and the teacher whose distributions ``fabricated`` and ``selective``
    report (optional); ``oracle`` is what ``selective`` believes about checks (required)."""
    if kind == "fabricated":
        return Fabricated(engine, other)
    if kind == "selective":
        if oracle is None:
            raise ValueError("selective needs an oracle of which answers are checked")
        return Selective(engine, other, oracle)
    if kind == "garbage":
        return Garbage(engine)
    if kind == "slow":
        return Slow(engine, delay)
    if kind == "wrong-model":
        if other is None:
            raise ValueError("wrong-model needs the other model it actually serves")
        return WrongModel(engine, other)
    raise ValueError(f"unknown adversary {kind!r}; known: {', '.join(KINDS)}")
