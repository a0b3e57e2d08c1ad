"""The tiny world: built once per machine (minutes), then reused from the cache instantly.

Set SUBNET_CACHE to share the cache with tests that isolate HOME.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from distill import cli
from distill.tasks import CHANCE, Task, check_answer, iter_tasks
from distill.tiny import TinyRecipe, TinyWorld, build_tiny_world, is_holdout
from distill.tokenizer import EOS_ID, PAD_ID
from subnet.errors import ConfigError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tiny: TinyWorld) -> TinyWorld:
    return tiny


def _heldout(n: int) -> list[Task]:
    """Fresh held-out tasks of the world's families (a seed the build never used, prompts
    never trained on)."""
    out: list[Task] = []
    seen: set[str] = set()
    recipe = TinyRecipe()
    for t in iter_tasks("test_tiny/heldout", recipe.families):
        if is_holdout(t, recipe.holdout_mod) and t.prompt not in seen:
            seen.add(t.prompt)
            out.append(t)
            if len(out) == n:
                return out
    raise AssertionError("unreachable")


def _greedy_accuracy(model_dir: Path, n: int = 150) -> float:
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tasks = _heldout(n)
    enc = tok([t.prompt for t in tasks], padding=True, return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(
            **enc, max_new_tokens=24, do_sample=False, eos_token_id=EOS_ID, pad_token_id=PAD_ID
        )
    texts = tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return sum(check_answer(t, a) for t, a in zip(tasks, texts, strict=True)) / len(tasks)


def test_world_layout_and_recipe(world: TinyWorld) -> None:
    for d in (world.tokenizer_dir, world.teacher, world.undistilled):
        assert (d / "tokenizer.json").is_file()
        assert (d / "tokenizer_config.json").is_file()
        assert (d / "special_tokens_map.json").is_file()
    for d in (world.teacher, world.undistilled):
        assert (d / "config.json").is_file()
        assert (d / "model.safetensors").is_file()
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["model_type"] == "llama"
        assert cfg["head_dim"] >= 32  # vLLM's CPU attention kernels
    info = world.info()
    assert info["hash"] == world.root.name == TinyRecipe().digest()
    teacher = info["stats"]["teacher"]["heldout_accuracy"]
    assert set(teacher) == {*TinyRecipe().families, "all"}
    assert world.distilled is None or world.distilled.is_dir()


def test_second_call_reuses_the_cache(world: TinyWorld) -> None:
    stamp = (world.root / "recipe.json").stat().st_mtime_ns
    again = build_tiny_world()
    assert again.root == world.root
    assert again.built is False
    assert (world.root / "recipe.json").stat().st_mtime_ns == stamp


def test_tokenizer_adds_bos_and_round_trips(world: TinyWorld) -> None:
    tok = AutoTokenizer.from_pretrained(world.teacher)
    ids = tok("add 12 34 =").input_ids
    assert ids[0] == tok.bos_token_id == 1
    assert tok.eos_token_id == EOS_ID and tok.pad_token_id == PAD_ID
    assert tok.decode(tok(" 46", add_special_tokens=False).input_ids) == " 46"


def test_teacher_beats_chance_and_is_unsure_on_add(world: TinyWorld) -> None:
    # The easiest family to guess (add) is right by chance 1 time in 199; the build measured
    # 70 % for the teacher on 300 held-out tasks: sort and reverse, and 15 % of add. The
    # teacher stops (600 steps) before it learns exact sums, on purpose: its uncertainty there
    # is what a distilled student copies, on every world seed (issue 19). The undistilled
    # student trains 1500 steps on the true sums and gets more of add right than the teacher
    # (24 % at seed 0, up to 84 % on other seeds), so exact-answer accuracy does not rank the
    # two; what ranks students is how closely they track the teacher (test_distill.py).
    teacher = _greedy_accuracy(world.teacher)
    assert teacher >= 0.5 > 4 * max(CHANCE[f] for f in TinyRecipe().families)
    accuracy = world.info()["stats"]["teacher"]["heldout_accuracy"]
    assert accuracy["add"] <= 0.3 < 0.9 <= min(accuracy["sort"], accuracy["reverse"]), accuracy


def test_cli_copies_the_cached_world(world: TinyWorld, tmp_path: Path) -> None:
    stamp = (world.root / "recipe.json").stat().st_mtime_ns
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    out = tmp_path / "world"
    assert cli.run(parser.parse_args(["tiny", "--out", str(out)])) == 0
    assert (out / "teacher" / "model.safetensors").read_bytes() == (
        world.teacher / "model.safetensors"
    ).read_bytes()
    assert (world.root / "recipe.json").stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match="not an empty directory"):
        cli.run(parser.parse_args(["tiny", "--out", str(out)]))
