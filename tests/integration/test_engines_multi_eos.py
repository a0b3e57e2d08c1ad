"""Several EOS ids (as Llama 3 / Qwen instruct models have) in both engines.

Copies of the tiny teacher (same weights) differ only in ``generation_config.json``'s EOS list:
``[2]`` (the tiny world's own), ``[3-digit]`` and ``[2, 3-digit]``, where 3-digit is the token of
the digit "3", which the teacher's answers often contain. So with both ids a greedy answer must
be the single-EOS answer cut at its first "3" or EOS, and the EOS logprob of the set must be the
logsumexp of the two single-id engines' EOS logprobs, position by position (in vLLM wherever its
one pass does not bound it: scoring/eos.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio

from distill.tasks import generate_tasks
from distill.tiny import TinyWorld
from distill.tokenizer import EOS_ID
from scoring.config import VerifyConfig
from scoring.eos import eos_bounds
from scoring.verify import check_eos
from subnet.engine import SamplingParams, StreamingEngine, load_engine
from subnet.tokenizer import ModelTokenizer
from tests.harness.chat_model import chat_model
from tests.integration._engine_kit import eos_gap_where_exact

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

K = 5
LOGPROB_BOUND = 1e-4  # as tests/integration/test_engines.py (vLLM vs transformers, float32)
GREEDY = SamplingParams(max_tokens=16, temperature=0.0, top_logprobs=K)


@pytest.fixture(scope="module")
def three(tiny: TinyWorld) -> int:
    [tid] = ModelTokenizer(tiny.teacher).encode_plain("3")
    return tid


@pytest.fixture(scope="module")
def folders(tiny: TinyWorld, three: int, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("eos")
    return {
        name: chat_model(tiny.teacher, root / name, template=None, eos_token_ids=ids)
        for name, ids in {"eos": [EOS_ID], "three": [three], "both": [EOS_ID, three]}.items()
    }


@pytest.fixture(scope="module")
def hf(folders: dict) -> dict[str, StreamingEngine]:
    return {name: load_engine("hf", path) for name, path in folders.items()}


@pytest.fixture(scope="module")
def prompts(folders: dict) -> list[list[int]]:
    tok = ModelTokenizer(folders["both"])
    return [tok.encode_text(t.prompt) for t in generate_tasks("multi-eos", 16, ("add", "sort"))]


def cut(tokens: list[int], stops: set[int]) -> list[int]:
    for i, t in enumerate(tokens):
        if t in stops:
            return tokens[: i + 1]
    return tokens


async def test_the_engine_reports_every_eos_id(hf: dict, three: int) -> None:
    assert hf["both"].info.eos_token_ids == (EOS_ID, three)
    assert hf["eos"].info.eos_token_ids == (EOS_ID,)


async def test_hf_stops_on_any_eos_id(hf: dict, prompts: list[list[int]], three: int) -> None:
    single = await hf["eos"].generate(prompts, GREEDY)
    both = await hf["both"].generate(prompts, GREEDY)
    stopped_on = set()
    for s, b in zip(single, both, strict=True):
        expected = cut(s.token_ids.tolist(), {EOS_ID, three})
        assert b.token_ids.tolist() == expected
        assert b.finish_reason == ("stop" if expected[-1] in (EOS_ID, three) else "length")
        stopped_on.add(expected[-1])
    assert {EOS_ID, three} <= stopped_on  # both ids ended some answer
    # a stream stops at the same place
    for p, b in zip(prompts[:4], both[:4], strict=True):
        chunks = [c async for c in hf["both"].generate_stream(p, GREEDY)]
        assert np.concatenate([c.token_ids for c in chunks]).tolist() == b.token_ids.tolist()
        assert chunks[-1].finish_reason == b.finish_reason


async def test_hf_eos_logprob_is_the_sets(hf: dict, prompts: list[list[int]]) -> None:
    completions = [
        c.token_ids
        for c in await hf["eos"].generate(prompts, SamplingParams(max_tokens=8, ignore_eos=True))
    ]
    scored = {n: await e.score(prompts, completions, K) for n, e in hf.items()}
    for a, b, both in zip(scored["eos"], scored["three"], scored["both"], strict=True):
        np.testing.assert_allclose(
            both.eos_logprobs, np.logaddexp(a.eos_logprobs, b.eos_logprobs), atol=1e-5
        )
        assert (both.eos_logprobs >= a.eos_logprobs).all()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def vllm_both(folders: dict) -> AsyncIterator[StreamingEngine]:
    engine = load_engine("vllm", folders["both"])
    yield engine
    await engine.close()


@pytest.mark.vllm
async def test_vllm_stops_and_scores_like_hf_with_several_eos_ids(
    hf: dict, vllm_both: StreamingEngine, prompts: list[list[int]], three: int
) -> None:
    assert vllm_both.info.eos_token_ids == (EOS_ID, three)
    h = await hf["both"].generate(prompts, GREEDY)
    v = await vllm_both.generate(prompts, GREEDY)
    for a, b in zip(h, v, strict=True):
        assert a.token_ids.tolist() == b.token_ids.tolist()
        assert a.finish_reason == b.finish_reason
    assert {c.token_ids[-1] for c in v if c.finish_reason == "stop"} == {EOS_ID, three}
    # off-policy answers (ignoring EOS): at most positions some EOS id is outside the top-k;
    # vLLM reports the bound there (scoring/eos.py) and probes an id only where the bound
    # reaches 1/2, so every EOS verdict is the exact one
    completions = [
        c.token_ids
        for c in await hf["eos"].generate(prompts, SamplingParams(max_tokens=8, ignore_eos=True))
    ]
    eos_ids = [EOS_ID, three]
    hs = await hf["both"].score(prompts, completions, K)
    sent = vllm_both.requests_sent  # type: ignore[attr-defined]
    vs = await vllm_both.score(prompts, completions, K)
    worst, bounded, lookups = 0.0, 0, 0
    for c, exact, one_pass in zip(completions, hs, vs, strict=True):
        worst = max(worst, eos_gap_where_exact(exact, one_pass, c, eos_ids, LOGPROB_BOUND))
        bounds = eos_bounds(
            one_pass.top_ids, one_pass.top_logprobs, c, one_pass.target_logprobs, eos_ids
        )
        undecided = bounds.undecided(c, eos_ids)
        lookups += int(bounds.unlisted[undecided].sum())
        bounded += int(((bounds.unlisted > 0) & ~undecided).sum())
        for q, count in ((0.9, 3), (0.5, 1), (0.999, 1)):
            cfg = VerifyConfig(refuse_stop_eos_prob=q, refuse_stop_count=count)
            verdicts = [
                check_eos(
                    c,
                    s.target_logprobs,
                    s.eos_logprobs,
                    eos_token_ids=eos_ids,
                    max_tokens=8,
                    cfg=cfg,
                )
                for s in (exact, one_pass)
            ]
            assert verdicts[0] is verdicts[1]
    # one request per answer plus one per (undecided position, unlisted id)
    assert vllm_both.requests_sent - sent == len(prompts) + lookups  # type: ignore[attr-defined]
    print(f"OBSERVED EOS-set lookups {lookups} for {len(prompts)} answers, {bounded} bounded")
    print(f"OBSERVED max |Δ EOS-set logprob| vLLM vs transformers (exact): {worst:.2e}")
    assert bounded > 0  # the one-pass bound decided some positions
    assert worst <= LOGPROB_BOUND
