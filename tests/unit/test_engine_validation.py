"""Request validation and model facts shared by both engines (no model, no torch)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from subnet.engine import EngineInfo, EngineInputError, Provenance, SamplingParams, load_engine
from subnet.engine.common import prompt_seed, read_model_facts, validate_generate, validate_score
from subnet.errors import EngineError

INFO = EngineInfo(
    vocab_size=100,
    eos_token_ids=(2,),
    max_model_len=32,
    max_top_logprobs=5,
    provenance=Provenance("hf", "test", "float32", "cpu", "/m"),
)


def _model_dir(
    tmp_path: Path, config: dict[str, object], gen: dict[str, object] | None = None
) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(config))
    if gen is not None:
        (tmp_path / "generation_config.json").write_text(json.dumps(gen))
    return tmp_path


def test_model_facts_come_from_the_checkpoint(tmp_path: Path) -> None:
    path = _model_dir(
        tmp_path,
        {"vocab_size": 512, "eos_token_id": 7, "max_position_embeddings": 256, "dtype": "bfloat16"},
        {"eos_token_id": [3, 7]},
    )
    facts = read_model_facts(path)
    assert (facts.vocab_size, facts.eos_token_ids, facts.max_model_len, facts.dtype) == (
        512,
        (3, 7),  # generation_config wins, every id of its list in order
        255,  # one below the position limit (vLLM scores with one spare slot)
        "bfloat16",
    )
    assert read_model_facts(path, max_model_len=100).max_model_len == 100
    assert facts.attn_softcap is None


def test_attention_soft_capping_is_read_so_the_hf_engine_can_honour_it(tmp_path: Path) -> None:
    # Gemma 2: transformers' SDPA attention drops the cap, so the hf engine runs eager attention
    # when this is set (tests/integration/test_model_families.py holds it to vLLM's logprobs).
    config = {"vocab_size": 9, "eos_token_id": 1, "max_position_embeddings": 8}
    path = _model_dir(tmp_path, {**config, "attn_logit_softcapping": 50.0})
    assert read_model_facts(path).attn_softcap == 50.0
    assert (
        read_model_facts(
            _model_dir(tmp_path, {**config, "attn_logit_softcapping": None})
        ).attn_softcap
        is None
    )


@pytest.mark.parametrize(
    ("config_eos", "gen", "expected"),
    [
        (7, None, (7,)),  # no generation_config: config.json's one id
        ([9, 7, 9], None, (9, 7)),  # a list, duplicates dropped, order kept
        (7, {"eos_token_id": 5}, (5,)),  # generation_config's one id wins
        (7, {"eos_token_id": None}, (7,)),  # present but empty: config.json's
        (7, {"bos_token_id": 1}, (7,)),  # no EOS in generation_config
    ],
)
def test_eos_ids_are_read_as_a_list(
    tmp_path: Path, config_eos: object, gen: dict[str, object] | None, expected: tuple[int, ...]
) -> None:
    config = {"vocab_size": 16, "eos_token_id": config_eos, "max_position_embeddings": 64}
    assert read_model_facts(_model_dir(tmp_path, config, gen)).eos_token_ids == expected


@pytest.mark.parametrize("eos", [[3, 16], -1, "2", [], True])
def test_eos_ids_outside_the_vocabulary_or_malformed_are_refused(
    tmp_path: Path, eos: object
) -> None:
    config = {"vocab_size": 16, "eos_token_id": eos, "max_position_embeddings": 64}
    with pytest.raises(EngineError, match="eos_token_id"):
        read_model_facts(_model_dir(tmp_path, config))


@pytest.mark.parametrize("length", [1, 256, 10_000])
def test_model_len_outside_the_model_is_refused(tmp_path: Path, length: int) -> None:
    path = _model_dir(
        tmp_path, {"vocab_size": 8, "eos_token_id": 1, "max_position_embeddings": 256}
    )
    with pytest.raises(EngineError, match="max_model_len"):
        read_model_facts(path, max_model_len=length)


def test_not_a_model_dir(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"config\.json"):
        read_model_facts(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(EngineError, match="cannot read"):
        read_model_facts(tmp_path)


GOOD = SamplingParams(max_tokens=4, top_logprobs=2)


@pytest.mark.parametrize(
    ("prompts", "params", "match"),
    [
        ([], GOOD, "no prompts"),
        ([[]], GOOD, "empty"),
        ([[1, 100]], GOOD, "outside"),
        ([[-1]], GOOD, "outside"),
        ([[1.5]], GOOD, "not an integer"),
        ([[True]], GOOD, "not an integer"),
        ([[1]], SamplingParams(max_tokens=32), "max_model_len"),
        ([[1]], SamplingParams(max_tokens=0), "max_tokens"),
        ([[1]], SamplingParams(top_logprobs=6), "top-k"),
        ([[1]], SamplingParams(top_logprobs=-1), "top-k"),
        ([[1]], SamplingParams(temperature=-0.1), "temperature"),
        ([[1]], SamplingParams(temperature=float("nan")), "temperature"),
        ([[1]], SamplingParams(top_p=0.0), "top_p"),
        ([[1]], SamplingParams(top_p=1.5), "top_p"),
        ([[1]], SamplingParams(temperature=1e-300), "temperature"),
        ([[1]], SamplingParams(temperature=0.005), "temperature"),
        ([[1]], SamplingParams(top_p=4.9e-324), "top_p"),
        ([[1]], SamplingParams(seed=-1), "seed"),
    ],
)
def test_bad_generate_requests(
    prompts: list[list[int]], params: SamplingParams, match: str
) -> None:
    with pytest.raises(EngineInputError, match=match):
        validate_generate(INFO, prompts, params)
    assert issubclass(EngineInputError, ValueError)


def test_good_requests_pass() -> None:
    validate_generate(INFO, [[0, 99], np.arange(3)], SamplingParams(max_tokens=29, top_logprobs=5))
    validate_score(INFO, [[1]], [np.asarray([2] * 31)], 5)
    validate_score(INFO, [[1]], [[]], 0)  # an empty completion scores to empty arrays


@pytest.mark.parametrize(
    ("prompts", "completions", "k", "match"),
    [
        ([[1]], [[1], [2]], 1, "completions"),
        ([[1]], [[100]], 1, "completion 0"),
        ([[1]], [[1] * 32], 1, "max_model_len"),
        ([[1]], [[1]], 6, "top-k"),
        ([[]], [[1]], 1, "empty"),
    ],
)
def test_bad_score_requests(
    prompts: list[list[int]], completions: list[list[int]], k: int, match: str
) -> None:
    with pytest.raises(EngineInputError, match=match):
        validate_score(INFO, prompts, completions, k)


def test_prompt_seeds_differ_per_prompt_and_repeat() -> None:
    assert prompt_seed(None, 3) is None
    assert [prompt_seed(10, i) for i in range(3)] == [10, 11, 12]


def test_unknown_engine_kind() -> None:
    with pytest.raises(EngineError, match="unknown engine"):
        load_engine("tgi", "/nowhere")  # type: ignore[arg-type]


def test_importing_the_package_loads_no_framework() -> None:
    code = (
        "import sys, subnet.engine, subnet.engine.common; "
        "print(sorted(m for m in ('torch', 'vllm', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
