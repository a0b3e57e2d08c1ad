"""Targets on disk: round trip, resume, and every bad input failing before training."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from distill.shards import TargetsError, TargetSet, tokenizer_hash
from distill.targets import TargetsConfig, build_targets, load_prompts
from distill.tasks import generate_tasks
from tests.integration._distill_kit import make_model


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("teacher"), 0)


@pytest.fixture(scope="module")
def targets(teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("targets")
    cfg = TargetsConfig(k=8, max_tokens=6, shard_size=7, batch=4)
    asyncio.run(
        build_targets(teacher, generate_tasks(1, 20), out, cfg, engine_kind="hf", progress=False)
    )
    return out


def test_round_trip_matches_the_engine(teacher: Path, targets: Path) -> None:
    ts = TargetSet(targets, verify=True)
    assert len(ts) == 20 and ts.k == 8 and ts.manifest["num_shards"] == 3
    assert ts.tokenizer_hash == tokenizer_hash(teacher)
    ex = ts[13]
    assert ex.top_ids.shape == (len(ex.tokens) - ex.prompt_len, 8)
    # Each position's top-1 is the greedy token the teacher emitted there.
    np.testing.assert_array_equal(ex.top_ids[:, 0], ex.tokens[ex.prompt_len :])
    assert (np.diff(ex.top_logprobs, axis=1) <= 0).all()


def test_interrupted_run_resumes_to_the_same_bytes(
    teacher: Path, targets: Path, tmp_path: Path
) -> None:
    out = tmp_path / "t"
    shutil.copytree(targets, out)
    manifest = json.loads((out / "manifest.json").read_text())
    # As if killed after shard 0: shard 1 written but not recorded, shard 2 never started.
    manifest["shards"], manifest["complete"] = manifest["shards"][:1], False
    (out / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(out / "shard-00002")
    with pytest.raises(TargetsError, match="incomplete"):
        TargetSet(out)
    cfg = TargetsConfig(k=8, max_tokens=6, shard_size=7, batch=4)
    asyncio.run(
        build_targets(teacher, generate_tasks(1, 20), out, cfg, engine_kind="hf", progress=False)
    )
    for i in range(3):
        for f in (targets / f"shard-0000{i}").iterdir():
            assert f.read_bytes() == (out / f"shard-0000{i}" / f.name).read_bytes()


def test_a_different_request_is_refused(teacher: Path, targets: Path, tmp_path: Path) -> None:
    out = tmp_path / "t"
    shutil.copytree(targets, out)
    cfg = TargetsConfig(k=4, max_tokens=6, shard_size=7, batch=4)
    with pytest.raises(TargetsError, match="differs in k"):
        asyncio.run(
            build_targets(
                teacher, generate_tasks(1, 20), out, cfg, engine_kind="hf", progress=False
            )
        )


def test_truncated_shard_fails_naming_the_file(targets: Path, tmp_path: Path) -> None:
    out = tmp_path / "t"
    shutil.copytree(targets, out)
    path = out / "shard-00001" / "top_logprobs.npy"
    path.write_bytes(path.read_bytes()[:-40])
    pattern = r"shard-00001/top_logprobs\.npy: 1\d+ bytes, .*truncated"
    with pytest.raises(TargetsError, match=pattern):
        TargetSet(out)


def test_corrupted_shard_fails_verification(targets: Path, tmp_path: Path) -> None:
    out = tmp_path / "t"
    shutil.copytree(targets, out)
    path = out / "shard-00000" / "top_ids.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    TargetSet(out)  # sizes still match
    with pytest.raises(TargetsError, match="sha256"):
        TargetSet(out, verify=True)


def test_prompt_sources(tmp_path: Path) -> None:
    assert len(load_prompts("tasks:5:3")) == 5
    assert load_prompts("tasks:4:3:add")[0].family == "add"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(TargetsError, match="empty"):
        load_prompts(str(empty))
    with pytest.raises(TargetsError, match="no such file"):
        load_prompts(str(tmp_path / "missing.jsonl"))
    with pytest.raises(TargetsError, match="bad task spec"):
        load_prompts("tasks:x")
    good = tmp_path / "p.jsonl"
    good.write_text('{"prompt": "add 1 2 ="}\n')
    assert load_prompts(str(good))[0].prompt == "add 1 2 ="


def test_not_a_targets_dir(tmp_path: Path) -> None:
    with pytest.raises(TargetsError, match=r"no manifest\.json"):
        TargetSet(tmp_path)


def test_rerun_rebuilds_a_truncated_shard(teacher: Path, targets: Path, tmp_path: Path) -> None:
    out = tmp_path / "t"
    shutil.copytree(targets, out)
    path = out / "shard-00002" / "tokens.npy"
    path.write_bytes(path.read_bytes()[:10])
    cfg = TargetsConfig(k=8, max_tokens=6, shard_size=7, batch=4)
    asyncio.run(
        build_targets(teacher, generate_tasks(1, 20), out, cfg, engine_kind="hf", progress=False)
    )
    assert path.read_bytes() == (targets / "shard-00002" / "tokens.npy").read_bytes()
    TargetSet(out, verify=True)
