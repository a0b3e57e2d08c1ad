"""Engines that cost nothing: precomputed tokens and top-k rows, handed out at once.

Driving the miner's HTTP layer with :class:`ZeroCostEngine` leaves only the layer's own work on
the clock (auth, replay store, policy, JSON/SSE, signing), which is what the overhead benchmark
measures; :class:`ReplayEngine` does the same for the validator with a real teacher's recorded
answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence

import numpy as np

from subnet.engine.types import (
    Completion,
    Engine,
    EngineInfo,
    Provenance,
    SamplingParams,
    Scored,
    TokenIds,
)

PROVENANCE = Provenance("zero", "zero-cost 1", "float32", "none", "precomputed")


class ZeroCostEngine:
    """``generate``/``generate_stream`` return slices of one precomputed completion; the stream
    yields one token per chunk, as an engine decoding one token per step does, and lets the
    event loop run between tokens (concurrent streams interleave token by token)."""

    def __init__(
        self, *, vocab_size: int = 32000, max_tokens: int = 256, k: int = 20, seed: int = 0
    ) -> None:
        rng = np.random.default_rng(seed)
        self._info = EngineInfo(vocab_size, (2,), 4096, max(k, 1), PROVENANCE)
        ids = rng.integers(3, vocab_size, size=(max_tokens, k), dtype=np.int64)
        lps = np.sort(np.log(rng.dirichlet(np.ones(k * 2), size=max_tokens)[:, :k]), axis=1)
        self._full = Completion(
            token_ids=ids[:, 0].copy(),
            sampled_logprobs=lps[:, -1].astype(np.float32),
            top_ids=ids,
            top_logprobs=lps[:, ::-1].astype(np.float32),
            finish_reason="length",
            provenance=PROVENANCE,
        )

    @property
    def info(self) -> EngineInfo:
        return self._info

    def _slice(self, lo: int, hi: int, k: int, last: bool) -> Completion:
        c = self._full
        return Completion(
            token_ids=c.token_ids[lo:hi],
            sampled_logprobs=c.sampled_logprobs[lo:hi],
            top_ids=c.top_ids[lo:hi, :k],
            top_logprobs=c.top_logprobs[lo:hi, :k],
            finish_reason="length" if last else "",
            provenance=PROVENANCE,
        )

    async def generate(
        self, prompts: Sequence[TokenIds], params: SamplingParams
    ) -> list[Completion]:
        n = min(params.max_tokens, len(self._full.token_ids))
        return [self._slice(0, n, params.top_logprobs, True) for _ in prompts]

    async def generate_stream(
        self, prompt: TokenIds, params: SamplingParams
    ) -> AsyncGenerator[Completion, None]:
        n = min(params.max_tokens, len(self._full.token_ids))
        for i in range(n):
            if i:
                await asyncio.sleep(0)  # a real engine's tokens arrive as separate events
            yield self._slice(i, i + 1, params.top_logprobs, i == n - 1)

    async def score(
        self, prompts: Sequence[TokenIds], completions: Sequence[TokenIds], k: int
    ) -> list[Scored]:
        raise NotImplementedError("the zero-cost engine only generates")

    async def close(self) -> None:
        return None


class ReplayEngine:
    """A real engine's answers, recorded beforehand and handed back at no cost.

    The validator benchmark swaps it in for the teacher to measure the validator's own work per
    answer (queries, signatures, parsing, gates, divergences, rows): what a validator can judge
    per second when its teacher runs on a GPU and costs the host nothing. Results are the
    recorded ones exactly, so every gate and score sees what the real teacher would give; a
    request that was not recorded is an error, never a made-up answer.
    """

    def __init__(
        self,
        info: EngineInfo,
        generated: dict[tuple[int, ...], Completion],
        scored: dict[tuple[tuple[int, ...], tuple[int, ...], int], Scored],
    ) -> None:
        self._info, self._generated, self._scored = info, generated, scored

    @classmethod
    async def record(
        cls,
        engine: Engine,
        prompts: Sequence[TokenIds],
        params: SamplingParams,
        pairs: Sequence[tuple[TokenIds, TokenIds]],
        k: int,
    ) -> ReplayEngine:
        """Record ``engine``'s ``generate(prompts, params)`` and its ``score`` of ``pairs``."""
        generated = await engine.generate(prompts, params)
        unique = list(dict.fromkeys((tuple(p), tuple(c)) for p, c in pairs))
        scored = await engine.score([p for p, _ in unique], [c for _, c in unique], k)
        return cls(
            engine.info,
            {tuple(p): g for p, g in zip(prompts, generated, strict=True)},
            {(p, c, k): s for (p, c), s in zip(unique, scored, strict=True)},
        )

    @property
    def info(self) -> EngineInfo:
        return self._info

    async def generate(
        self, prompts: Sequence[TokenIds], params: SamplingParams
    ) -> list[Completion]:
        await asyncio.sleep(0)
        return [self._generated[tuple(p)] for p in prompts]

    async def score(
        self, prompts: Sequence[TokenIds], completions: Sequence[TokenIds], k: int
    ) -> list[Scored]:
        await asyncio.sleep(0)
        return [
            self._scored[(tuple(p), tuple(c), k)] for p, c in zip(prompts, completions, strict=True)
        ]

    async def close(self) -> None:
        return None
