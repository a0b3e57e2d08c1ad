"""``subnet distill eval`` reports what the validator would score: the same answers judged by
the validator's own judge (``neurons.validator.judge``) give the same s_kl, s_ref and score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distill.evaluate import EvalResult, judge_answers, student_answers, summarize
from distill.targets import encode_prompts, load_prompts
from neurons.validator import judge
from neurons.validator.miner_client import MinerAnswer
from neurons.validator.participant import BASELINE
from scoring.aggregate import answer_score
from scoring.causes import Cause
from scoring.config import ScoreConfig, SpeedConfig, VerifyConfig
from scoring.speed import speed_scores
from subnet.engine import SamplingParams, load_engine
from tests.integration._distill_kit import make_model, make_targets

pytestmark = pytest.mark.slow

K, MAX_TOKENS = 8, 20


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval")
    teacher = make_model(root / "teacher", seed=0)
    targets = make_targets(teacher, root / "targets")
    from distill.train import TrainConfig, train

    cfg = TrainConfig(steps=30, batch=8, lr=1e-2, warmup=2, eval_sequences=4, save_every=-1)
    student = make_model(root / "init", seed=1, weights=False)
    train(student, targets, root / "distilled", cfg, progress=False, log=lambda _: None)
    return {
        "teacher": teacher,
        "distilled": root / "distilled",
        "random": make_model(root / "random", seed=2),
    }


async def test_eval_scores_answers_exactly_as_the_validator_judges_them(
    kit: dict[str, Path],
) -> None:
    score_cfg, verify_cfg, speed_cfg = ScoreConfig(), VerifyConfig(), SpeedConfig()
    tasks = load_prompts("tasks:12:7")
    prompts = encode_prompts(kit["teacher"], tasks)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(kit["teacher"] / "tokenizer.json"))

    def decode(ids: list[int]) -> str:
        return tok.decode(ids, skip_special_tokens=True)

    teacher = load_engine("hf", kit["teacher"], max_top_logprobs=20)
    try:
        refs = await teacher.generate(
            prompts, SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0)
        )
        per_student = []
        for name in ("distilled", "random"):
            student = load_engine("hf", kit[name], max_top_logprobs=20)
            try:
                answers = await student_answers(
                    student, prompts, k=K, max_tokens=MAX_TOKENS, temperature=1.0, seed=3
                )
            finally:
                await student.close()
            await judge_answers(
                answers,
                teacher,
                tasks,
                prompts,
                refs,
                decode,
                k=K,
                max_tokens=MAX_TOKENS,
                score_cfg=score_cfg,
                verify_cfg=verify_cfg,
            )
            per_student.append(answers)

        # The validator's path on the very same answers: gates, teacher scoring, sub-scores.
        flat = [a for answers in per_student for a in answers]
        speed = speed_scores(
            [len(a.completion.token_ids) for a in flat],
            [a.ttft_s for a in flat],
            [a.total_s for a in flat],
            [a.cause.ok for a in flat],
            speed_cfg,
        )
        validator_scores = []
        for n, answers in enumerate(per_student):
            judged = []
            for task, a in enumerate(answers):
                c = a.completion
                j = judge.Judged(
                    MinerAnswer(
                        BASELINE,
                        tasks[task].task_id,
                        Cause.OK,
                        token_ids=c.token_ids,
                        sampled_logprobs=c.sampled_logprobs.astype(np.float64),
                        top_ids=c.top_ids,
                        top_logprobs=c.top_logprobs.astype(np.float64),
                        finish_reason=c.finish_reason,
                    ),
                    task,
                )
                judge.gate_format(
                    j,
                    vocab_size=teacher.info.vocab_size,
                    k=K,
                    max_tokens=MAX_TOKENS,
                    cfg=verify_cfg,
                )
                judge.gate_termination(
                    j,
                    eos_token_ids=teacher.info.eos_token_ids,
                    max_tokens=MAX_TOKENS,
                    score_cfg=score_cfg,
                    verify_cfg=verify_cfg,
                )
                assert j.cause == a.cause, (task, j.cause, a.cause)
                judged.append(j)
            # One batched teacher pass over the surviving answers, as the validator's step does.
            alive = [j for j in judged if j.ok]
            scored = await teacher.score(
                [prompts[j.task] for j in alive], [j.answer.token_ids.tolist() for j in alive], K
            )
            for j, sc in zip(alive, scored, strict=True):
                judge.score_against_teacher(
                    j,
                    sc,
                    refs[j.task].sampled_logprobs,
                    tasks[j.task],
                    decode(j.answer.token_ids.tolist()),
                    vocab_size=teacher.info.vocab_size,
                    cfg=score_cfg,
                )
            for j, a in zip(judged, answers, strict=True):
                assert (j.s_kl, j.s_ref) == (a.s_kl, a.s_ref), j.task
                s_speed = float(speed[n * len(tasks) + j.task])
                validator_scores.append(
                    answer_score(j.cause, j.s_kl, j.s_ref, s_speed, score_cfg).score
                )
    finally:
        await teacher.close()

    results = [
        summarize(name, answers, speed[n * len(tasks) : (n + 1) * len(tasks)], score_cfg)
        for n, (name, answers) in enumerate(zip(("distilled", "random"), per_student, strict=True))
    ]
    for n, r in enumerate(results):
        mine = validator_scores[n * len(tasks) : (n + 1) * len(tasks)]
        assert r.score == pytest.approx(float(np.mean(mine)), rel=1e-12)
        assert 0.0 <= r.s_speed <= 1.0 and r.tasks == len(tasks)
    # Distillation shows where the validator looks: the trained student beats a random one on
    # the teacher-derived components. Not on the total: its speed part is wall-clock timing
    # (measured: the two students' tokens/s swapped order between runs under load, moving the
    # totals by 0.004-0.007 while this kit's quality lead is ~0.002), and no test asserts on
    # wall time. Both components are deterministic here (seeded sampling).
    distilled, random = results

    def quality(r: EvalResult) -> float:
        return score_cfg.w_kl * r.s_kl + score_cfg.w_ref * r.s_ref

    assert not distilled.gated and not random.gated
    assert distilled.s_kl > random.s_kl and quality(distilled) > quality(random)


def test_eval_cli_prints_the_score_components(
    kit: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from subnet.cli import main

    code = main(
        [
            "distill",
            "--set",
            "validator.max_tokens=12",
            "eval",
            "--student",
            str(kit["distilled"]),
            "--student",
            str(kit["random"]),
            "--teacher",
            str(kit["teacher"]),
            "--tasks",
            "tasks:6:1",
            "--engine",
            "hf",
            "--k",
            "8",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    head, *rows = out.strip().splitlines()
    assert head.split()[:6] == ["model", "tasks", "score", "s_kl", "s_ref", "s_speed"]
    assert [r.split()[0] for r in rows[:2]] == ["distilled", "random"]
    speeds = [float(r.split()[5]) for r in rows[:2]]
    assert max(speeds) <= 1.0 and all(s >= 0 for s in speeds)


def test_eval_refuses_a_student_with_another_tokenizer(
    kit: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from subnet.cli import main

    other = make_model(tmp_path / "other", seed=1, tokenizer_seed=7)
    code = main(
        [
            "distill",
            "eval",
            "--student",
            str(other),
            "--teacher",
            str(kit["teacher"]),
            "--tasks",
            "tasks:2",
            "--engine",
            "hf",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "tokenizer mismatch" in err and "Traceback" not in err
