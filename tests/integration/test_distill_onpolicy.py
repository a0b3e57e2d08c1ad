"""On-policy distillation with a real teacher engine (transformers) on the random tiny kit:
the student's own samples are what the teacher scores and the trainer learns from, and a run
interrupted mid-round resumes on the same samples to the same weights."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distill.live_teacher import train_with_teacher
from distill.shards import TargetsError, TargetSet
from distill.train import TrainConfig, train
from subnet.engine import Engine, EngineInfo, Scored, TokenIds, load_engine
from tests.integration._distill_kit import make_model, make_targets

pytestmark = pytest.mark.slow

CFG = TrainConfig(
    steps=12,
    batch=4,
    lr=1e-2,
    warmup=2,
    eval_sequences=4,
    eval_every=-1,
    save_every=2,
    seed=3,
    onpolicy_ratio=0.5,
    onpolicy_every=3,
    onpolicy_max_tokens=5,
)


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("onpolicy")
    teacher = make_model(root / "teacher", seed=0)
    return {
        "teacher": teacher,
        "student": make_model(root / "student", seed=1, weights=False),
        "targets": make_targets(teacher, root / "targets"),
    }


class Recording:
    """The real teacher engine, recording what it is asked to score; optionally holding the
    ``hold``-th request until ``release`` is set (to interrupt a run at a known point)."""

    def __init__(self, engine: Engine, hold: int = 0) -> None:
        self.engine, self.hold = engine, hold
        self.calls: list[tuple[list[list[int]], list[list[int]], int]] = []
        self.held, self.release = asyncio.Event(), asyncio.Event()

    @property
    def info(self) -> EngineInfo:
        return self.engine.info

    async def generate(self, prompts: Sequence[TokenIds], params: object) -> list[object]:
        raise AssertionError("on-policy training must not ask the teacher to generate")

    async def score(
        self, prompts: Sequence[TokenIds], completions: Sequence[TokenIds], k: int
    ) -> list[Scored]:
        self.calls.append(([list(p) for p in prompts], [list(c) for c in completions], k))
        if len(self.calls) == self.hold:
            self.held.set()
            await self.release.wait()
        return await self.engine.score(prompts, completions, k)

    async def close(self) -> None:
        await self.engine.close()


async def _run(kit: dict[str, Path], out: Path, engine: Recording) -> object:
    return await train_with_teacher(
        kit["student"],
        kit["targets"],
        out,
        CFG,
        engine=engine,  # type: ignore[arg-type]
        progress=False,
        log=print,
    )


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model.safetensors"))


async def test_the_teacher_scores_the_students_own_samples(
    kit: dict[str, Path], tmp_path: Path
) -> None:
    teacher = Recording(load_engine("hf", kit["teacher"]))
    try:
        await _run(kit, tmp_path / "s", teacher)
    finally:
        await teacher.close()
    # One request per round of 3 steps (12 steps: rounds 0..3), 3 steps x 2 sequences each.
    assert len(teacher.calls) == 4
    targets = TargetSet(kit["targets"])
    n_train = len(targets) - 4
    train_prompts = {tuple(targets[i].tokens[: targets[i].prompt_len]) for i in range(n_train)}
    teacher_answers = {tuple(targets[i].tokens[targets[i].prompt_len :]) for i in range(n_train)}
    sampled = [c for _, completions, _ in teacher.calls for c in completions]
    for prompts, completions, k in teacher.calls:
        assert k == targets.k and len(prompts) == len(completions) == 6
        assert {tuple(p) for p in prompts} <= train_prompts  # training prompts only
        for c in completions:
            assert 1 <= len(c) <= CFG.onpolicy_max_tokens
            assert 2 not in c[:-1]  # sampling stops at EOS (id 2)
    # The random student's samples are not the teacher's greedy answers.
    assert sum(tuple(c) not in teacher_answers for c in sampled) > len(sampled) // 2
    # Rounds differ (fresh prompts and samples each refresh).
    assert teacher.calls[0][1] != teacher.calls[1][1]
    assert (tmp_path / "s" / "checkpoints" / "step_000012" / "pool.pt").is_file()


async def test_an_interrupted_onpolicy_run_resumes_on_the_same_samples(
    kit: dict[str, Path], tmp_path: Path
) -> None:
    engine = load_engine("hf", kit["teacher"])
    try:
        await _run(kit, tmp_path / "whole", Recording(engine))

        # Interrupt during round 1 (steps 3-5): the request of round 1 is held, the run is
        # cancelled (what Ctrl-C does), the step in flight finishes and checkpoint 4 is the
        # newest, in the middle of the round. Its pool must come back from the checkpoint:
        # resampled with step-4 weights it would differ.
        held = Recording(engine, hold=2)
        task = asyncio.create_task(_run(kit, tmp_path / "cut", held))
        await held.held.wait()
        task.cancel()
        held.release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        newest = sorted((tmp_path / "cut" / "checkpoints").glob("step_*"))[-1].name
        assert newest == "step_000004"
        assert not (tmp_path / "cut" / "model.safetensors").exists()

        resumed = Recording(engine)
        await _run(kit, tmp_path / "cut", resumed)
        # Round 1 came from the checkpoint; rounds 2 and 3 were sampled after the resume.
        assert len(resumed.calls) == 2
    finally:
        await engine.close()
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_onpolicy_without_a_teacher_is_refused(kit: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(TargetsError, match="needs a teacher"):
        train(kit["student"], kit["targets"], tmp_path / "o", CFG, progress=False)
    assert not (tmp_path / "o").exists()


async def test_a_teacher_with_another_tokenizer_is_refused(
    kit: dict[str, Path], tmp_path: Path
) -> None:
    other = make_model(tmp_path / "other", seed=0, tokenizer_seed=7)
    with pytest.raises(TargetsError, match="tokenizer mismatch"):
        await train_with_teacher(
            kit["student"], kit["targets"], tmp_path / "o", CFG, teacher=other, engine_kind="hf"
        )
