"""The real world: DeepSeek-V4's 129,280-id tokenizer, a chat template, a list of EOS ids, and
models trained on the standard library's docstrings. Built once per machine (minutes), reused
from the cache; both engines load it like any checkpoint and agree on it.

One vLLM engine for the module (it starts in ~40 s on CPU), closed when the module ends, so at
most this one and the tiny teacher's (``test_engines.py``) exist at once.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from tokenizers import Tokenizer

from distill import cli, real_chat
from distill.prompts import load_prompt_file
from distill.real_world import build_real_world
from distill.shards import TargetSet, tokenizer_hash
from distill.stdlib_corpus import split_items
from distill.tasks import Task
from distill.tiny_spec import TinyWorld
from subnet.engine import SamplingParams, StreamingEngine, load_engine
from subnet.engine.common import read_model_facts
from subnet.errors import ConfigError
from subnet.tokenizer import ModelTokenizer
from tests.integration._engine_kit import assert_same_greedy_path, eos_gap_where_exact

pytestmark = pytest.mark.slow
ASYNC = pytest.mark.asyncio(loop_scope="module")  # the async tests share the module's engines

# Largest |Δ logprob| allowed between vLLM and transformers on the float32 real teacher. A
# 129,280-way log-softmax in float32: observed (printed by the score test) on the 2-core box.
LOGPROB_BOUND = 1e-4
K = 5


def _models(world: TinyWorld) -> list[Path]:
    assert world.distilled is not None
    return [world.teacher, world.undistilled, world.distilled]


def held_out(world: TinyWorld, n: int, offset: int = 0) -> list[Task]:
    """``n`` of the world's held-out chat prompts (``prompts.jsonl``, as validators load it),
    spread over the file."""
    tasks = load_prompt_file(world.root / "prompts.jsonl").tasks
    step = len(tasks) // n
    return [tasks[(offset + i * step) % len(tasks)] for i in range(n)]


def rendered(world: TinyWorld, tasks: list[Task]) -> list[list[int]]:
    """The prompts' ids as validators send them (the teacher's chat template)."""
    tok = ModelTokenizer(world.teacher)
    return [tok.encode_prompt(t.content) for t in tasks]


def test_layout_tokenizer_and_the_list_of_eos_ids(real: TinyWorld) -> None:
    for d in (real.tokenizer_dir, *_models(real)):
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            assert (d / name).is_file(), d / name
        assert json.loads((d / "tokenizer_config.json").read_text())["chat_template"]
    hashes = {tokenizer_hash(d) for d in _models(real)}
    assert hashes == {tokenizer_hash(real.tokenizer_dir)}
    for d in _models(real):
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["model_type"] == "llama" and cfg["vocab_size"] == real_chat.VOCAB_SIZE
        assert cfg["tie_word_embeddings"] is True
        assert cfg["head_dim"] >= 32  # vLLM's CPU attention kernels
        gen = json.loads((d / "generation_config.json").read_text())
        assert gen["eos_token_id"] == [real_chat.EOS_ID, real_chat.EOT_ID]
        facts = read_model_facts(d)  # every EOS id, the primary first
        assert (facts.vocab_size, facts.eos_token_ids) == (
            real_chat.VOCAB_SIZE,
            (real_chat.EOS_ID, real_chat.EOT_ID),
        )
    held = {i.question for i in split_items(real.info()["recipe"]["holdout_mod"])[1]}
    rows = [json.loads(line) for line in (real.root / "prompts.jsonl").read_text().splitlines()]
    assert len(rows) == real.info()["heldout_questions"] == len(held)
    for row in rows:
        (turn,) = row["messages"]
        assert turn["role"] == "user" and turn["content"] in held and row["answer"]
    # A chat dataset the validator takes whole: every row rendered with the teacher's template
    # (none refused for control-token text), BOS once, ending with the assistant's header.
    loaded = load_prompt_file(real.root / "prompts.jsonl")
    assert loaded.chat and len(loaded.tasks) == len(rows) and loaded.skipped == 0
    for ids in rendered(real, list(loaded.tasks)):
        assert ids[:2] == [real_chat.BOS_ID, real_chat.USER_ID] and ids.count(real_chat.BOS_ID) == 1
        assert ids[-1] == real_chat.ASSISTANT_ID


def test_the_models_learned_from_the_text(real: TinyWorld) -> None:
    info = real.info()
    base, stats = info["baselines"], info["stats"]
    distilled = json.loads((real.root / "student-distilled" / "distill_stats.json").read_text())
    undistilled = stats["student-undistilled"]
    print(
        f"OBSERVED held-out nats/token: uniform {base['uniform_loss']}, unigram "
        f"{base['unigram_loss']}, teacher {stats['teacher']['heldout_loss']}, undistilled "
        f"{undistilled['heldout_loss']}, distilled {distilled['heldout_loss']}; KL to the "
        f"teacher on the docstrings: undistilled {undistilled['heldout_kl']}, distilled "
        f"{distilled['heldout_kl']}"
    )
    for s in info["samples"]:
        print(f"  {s['question']!r}: teacher {s['teacher']!r} (docstring {s['docstring']!r})")
    # Measured at build time on questions never trained on, over all 129,280 ids: the teacher
    # does much better than the answers' unigram distribution, which does much better than
    # uniform; the smaller student trained on the same text lands between. (The distilled
    # student learned the teacher's answers, not the docstrings: see the next test.)
    teacher = stats["teacher"]["heldout_loss"]
    assert teacher < base["unigram_loss"] - 1.0 < base["uniform_loss"] - 2.0
    assert teacher < undistilled["heldout_loss"] < base["unigram_loss"]
    assert distilled["heldout_kl"] > 0 and undistilled["heldout_kl"] > 0
    assert len(info["samples"]) == info["recipe"]["samples"]
    assert all(s["teacher"].strip() for s in info["samples"])


@ASYNC
async def test_the_distilled_student_tracks_the_teacher_closer(
    real: TinyWorld, hf_engine: StreamingEngine
) -> None:
    """The validator's own numbers (``distill.evaluate``: each student's greedy answers to
    held-out chat prompts, the teacher's top-k along them): distillation pays off."""
    from distill.evaluate import evaluate_student

    assert real.distilled is not None
    tok = Tokenizer.from_file(str(real.teacher / "tokenizer.json"))
    tasks = held_out(real, 32)
    prompts = rendered(real, tasks)
    results = {}
    for path in (real.undistilled, real.distilled):
        student = load_engine("hf", path, device="cpu")
        results[path.name] = await evaluate_student(
            student, hf_engine, tasks, prompts, tok.decode, name=path.name, k=16, max_tokens=16
        )
        await student.close()
    d, u = results["student-distilled"], results["student-undistilled"]
    print(f"OBSERVED validator numbers, distilled {d.row()}, undistilled {u.row()}")
    assert d.forward_kl < u.forward_kl
    assert d.topk_overlap > u.topk_overlap


def test_second_call_reuses_the_cache(real: TinyWorld) -> None:
    stamp = (real.root / "recipe.json").stat().st_mtime_ns
    again = build_real_world()
    assert (again.root, again.built) == (real.root, False)
    assert (real.root / "recipe.json").stat().st_mtime_ns == stamp


def test_cli_copies_the_cached_real_world(real: TinyWorld, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    out = tmp_path / "world"
    assert cli.run(parser.parse_args(["tiny", "--world", "real", "--out", str(out)])) == 0
    for name in ("teacher", "student-undistilled", "student-distilled"):
        assert (out / name / "model.safetensors").read_bytes() == (
            real.root / name / "model.safetensors"
        ).read_bytes()
    with pytest.raises(ConfigError, match="not an empty directory"):
        cli.run(parser.parse_args(["tiny", "--world", "real", "--out", str(out)]))


@ASYNC
async def test_targets_store_k_columns_whatever_the_vocabulary(
    real: TinyWorld, hf_engine: StreamingEngine, tmp_path: Path
) -> None:
    from distill.targets import TargetsConfig, build_targets

    tasks = held_out(real, 6, offset=5)  # chat messages: the targets render them
    manifest = await build_targets(
        real.teacher,
        tasks,
        tmp_path / "t",
        TargetsConfig(k=4, max_tokens=8, batch=6),
        engine=hf_engine,
        progress=False,
    )
    targets = TargetSet(tmp_path / "t", verify=True)
    assert targets.vocab_size == real_chat.VOCAB_SIZE and targets.k == 4
    assert manifest["eos_token_ids"] == [real_chat.EOS_ID, real_chat.EOT_ID]
    (shard,) = manifest["shards"]
    header = 128  # a .npy header
    for name in ("top_ids", "top_logprobs"):
        assert shard["files"][name]["bytes"] == header + 4 * 4 * shard["positions"]
    first = targets[0]
    assert first.top_ids.shape == (len(first.tokens) - first.prompt_len, 4)


# -- both engines on the real teacher ----------------------------------------------------------


@pytest.fixture(scope="module")
def prompts(real: TinyWorld) -> list[list[int]]:
    """12 held-out chat prompts as the validator sends them (the template's ids)."""
    return rendered(real, held_out(real, 12, offset=11))


@pytest.fixture(scope="module")
def hf_engine(real: TinyWorld) -> StreamingEngine:
    return load_engine("hf", real.teacher, device="cpu")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def vllm_engine(real: TinyWorld) -> AsyncIterator[StreamingEngine]:
    engine = load_engine("vllm", real.teacher)
    yield engine
    await engine.close()


GREEDY = SamplingParams(max_tokens=24, temperature=0.0, top_logprobs=K)


@ASYNC
@pytest.mark.vllm
async def test_engines_agree_on_the_real_teacher(
    hf_engine: StreamingEngine, vllm_engine: StreamingEngine, prompts: list[list[int]]
) -> None:
    assert hf_engine.info.vocab_size == vllm_engine.info.vocab_size == real_chat.VOCAB_SIZE
    assert hf_engine.info.eos_token_ids == vllm_engine.info.eos_token_ids
    assert hf_engine.info.eos_token_ids == (real_chat.EOS_ID, real_chat.EOT_ID)
    hs = await hf_engine.generate(prompts, GREEDY)
    vs = await vllm_engine.generate(prompts, GREEDY)
    assert "stop" in {h.finish_reason for h in hs}  # answers end with the chat EOS
    compared = 0
    for h, v in zip(hs, vs, strict=True):
        n = assert_same_greedy_path(h.token_ids, h.top_logprobs, v.token_ids, LOGPROB_BOUND)
        compared += n
        if n == len(h.token_ids):
            assert h.finish_reason == v.finish_reason
        assert np.abs(h.sampled_logprobs[:n] - v.sampled_logprobs[:n]).max(initial=0) <= (
            LOGPROB_BOUND
        )
    assert compared >= len(prompts) * 4
    # Teacher forcing: the validator's score pass, on the teacher's and on off-policy answers.
    completions = [h.token_ids for h in hs] + [
        np.asarray([*p[-6:][::-1], real_chat.EOS_ID]) for p in prompts[:4]
    ]
    pairs = [*prompts, *prompts[:4]]
    hsc = await hf_engine.score(pairs, completions, K)
    vsc = await vllm_engine.score(pairs, completions, K)
    worst, eos_ids = 0.0, hf_engine.info.eos_token_ids
    for c, a, b in zip(completions, hsc, vsc, strict=True):
        assert np.array_equal(a.target_ranks, b.target_ranks)
        clear = np.abs(np.diff(a.top_logprobs, axis=1)) > 2 * LOGPROB_BOUND
        keep = np.ones_like(a.top_ids, dtype=bool)
        keep[:, 1:] &= clear
        keep[:, :-1] &= clear
        assert np.array_equal(a.top_ids[keep], b.top_ids[keep])
        for x, y in (
            (a.top_logprobs, b.top_logprobs),
            (a.target_logprobs, b.target_logprobs),
        ):
            worst = max(worst, float(np.abs(x - y).max(initial=0.0)))
        worst = max(worst, eos_gap_where_exact(a, b, c, eos_ids, LOGPROB_BOUND))
    print(f"OBSERVED max |Δ logprob| vLLM vs transformers, real teacher (score): {worst:.2e}")
    assert worst <= LOGPROB_BOUND
