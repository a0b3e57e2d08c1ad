"""The transformers engine scores a batch in whole-tensor passes (``HFEngine._score``): rows of
different lengths stay aligned, and the memory-bounding chunks change nothing. The validator
benchmark's replay teacher hands back exactly what the real one recorded."""

from __future__ import annotations

import numpy as np
import pytest

from distill.tiny import TinyWorld
from neurons.owner.benchkit.zero_engine import ReplayEngine
from subnet.engine import SamplingParams, Scored, load_engine
from subnet.engine import hf as hf_engine

FIELDS = ("top_ids", "top_logprobs", "target_logprobs", "target_ranks", "eos_logprobs")


def _pairs(vocab: int, n: int, seed: int) -> list[tuple[list[int], list[int]]]:
    rng = np.random.default_rng(seed)
    return [
        (
            [int(t) for t in rng.integers(1, vocab, int(rng.integers(2, 20)))],
            [int(t) for t in rng.integers(0, vocab, int(rng.integers(1, 12)))],
        )
        for _ in range(n)
    ]


def _same(a: Scored, b: Scored) -> None:
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and np.array_equal(x, y), f


async def test_batched_rows_match_each_row_alone_and_chunks_change_nothing(
    tiny: TinyWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = load_engine("hf", tiny.teacher, device="cpu")
    try:
        pairs = _pairs(engine.info.vocab_size, 24, seed=5)
        prompts, completions = [p for p, _ in pairs], [c for _, c in pairs]
        batched = await engine.score(prompts, completions, 8)
        for (p, c), got in zip(pairs, batched, strict=True):
            [alone] = await engine.score([p], [c], 8)
            assert got.top_ids.shape == (len(c), 8) and got.target_logprobs.shape == (len(c),)
            # padding changes the forward pass's rounding only (the masked positions)
            np.testing.assert_allclose(got.target_logprobs, alone.target_logprobs, atol=1e-4)
            np.testing.assert_allclose(got.eos_logprobs, alone.eos_logprobs, atol=1e-4)
            np.testing.assert_allclose(got.top_logprobs, alone.top_logprobs, atol=1e-4)
            # the given token's logprob is its own entry in the distribution
            hit = got.top_ids == np.asarray(c)[:, None]
            rows = hit.any(axis=1)
            np.testing.assert_array_equal(got.top_logprobs[hit], got.target_logprobs[rows])
            assert np.all(got.target_ranks[rows] == np.argmax(hit, axis=1)[rows] + 1)
        # one row per chunk: the same bytes as one chunk for the whole batch
        monkeypatch.setattr(hf_engine, "SCORE_CHUNK_ELEMENTS", 1)
        for a, b in zip(await engine.score(prompts, completions, 8), batched, strict=True):
            _same(a, b)
    finally:
        await engine.close()


async def test_replay_engine_hands_back_the_recorded_teacher_and_nothing_else(
    tiny: TinyWorld,
) -> None:
    engine = load_engine("hf", tiny.teacher, device="cpu")
    try:
        pairs = _pairs(engine.info.vocab_size, 6, seed=9)
        prompts = [p for p, _ in pairs]
        params = SamplingParams(max_tokens=8, temperature=0.0)
        replay = await ReplayEngine.record(engine, prompts, params, pairs, 5)
        assert replay.info == engine.info
        real_gen = await engine.generate(prompts, params)
        for got_gen, want_gen in zip(await replay.generate(prompts, params), real_gen, strict=True):
            np.testing.assert_array_equal(got_gen.token_ids, want_gen.token_ids)
        real = await engine.score(prompts, [c for _, c in pairs], 5)
        for a, b in zip(await replay.score(prompts, [c for _, c in pairs], 5), real, strict=True):
            _same(a, b)
        with pytest.raises(KeyError):  # never a made-up answer
            await replay.score([prompts[0]], [[1, 2, 3, 4, 5, 6, 7]], 5)
    finally:
        await engine.close()
