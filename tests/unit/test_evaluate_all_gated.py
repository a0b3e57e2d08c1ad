"""``distill.evaluate`` with every answer of a student gated: nothing goes to the teacher (an
engine refuses an empty ``score`` request) and the student scores 0 with its gates counted."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np

from distill.evaluate import _Answer, judge_answers, summarize
from distill.tasks import Task
from scoring.causes import Cause
from scoring.config import ScoreConfig, VerifyConfig
from subnet.engine import Completion
from subnet.engine.types import Provenance


class _Teacher:
    info = SimpleNamespace(vocab_size=100, eos_token_ids=(1,))

    async def score(self, prompts: object, completions: object, k: int) -> list[object]:
        raise AssertionError("no answer passed the gates: nothing to score")


def _empty() -> Completion:
    return Completion(
        token_ids=np.zeros(0, np.int64),
        sampled_logprobs=np.zeros(0, np.float32),
        top_ids=np.zeros((0, 4), np.int64),
        top_logprobs=np.zeros((0, 4), np.float32),
        finish_reason="stop",
        provenance=Provenance("hf", "0", "float32", "cpu", "fake"),
    )


def test_all_gated_answers_are_not_scored() -> None:
    answers = [_Answer(_empty(), 0.1, 0.2) for _ in range(2)]
    tasks = [Task("f", f"p{i}", "x", f"id{i}") for i in range(2)]
    asyncio.run(
        judge_answers(
            answers,
            _Teacher(),  # type: ignore[arg-type]
            tasks,
            [[2], [3]],
            [_empty(), _empty()],
            lambda ids: "",
            k=4,
            max_tokens=8,
            score_cfg=ScoreConfig(),
            verify_cfg=VerifyConfig(),
        )
    )
    assert all(not a.cause.ok for a in answers)
    result = summarize("s", answers, np.zeros(2), ScoreConfig())
    assert result.score == 0.0 and np.isnan(result.forward_kl)
    assert result.gated == {Cause.FORMAT_SHAPE.value: 2}
