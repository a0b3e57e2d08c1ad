"""An engine that costs nothing: precomputed tokens and top-k rows, handed out at once.

Driving the miner's HTTP layer with it leaves only the layer's own work on the clock (auth,
replay store, policy, JSON/SSE, signing), which is what the overhead benchmark measures.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence

import numpy as np

from subnet.engine.types import (
    Completion,
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
