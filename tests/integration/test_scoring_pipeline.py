"""The step's scoring pipeline on the real teacher (hf, tiny world): answers gated and scored
in micro-batches as they arrive get exactly the judgement of one batch after the last answer."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from distill.tasks import generate_tasks
from neurons.validator import judge
from neurons.validator.judge import Judged
from neurons.validator.miner_client import MinerAnswer
from neurons.validator.participant import Miner
from neurons.validator.pipeline import ScoringPipeline
from scoring.causes import Cause
from subnet.config import load_config
from subnet.engine import SamplingParams, Scored, load_engine
from subnet.tokenizer import ModelTokenizer

pytestmark = pytest.mark.slow


async def test_pipelined_scores_equal_one_batch_after_the_last_answer(tiny) -> None:
    cfg = load_config(None, env={})
    teacher = load_engine("hf", tiny.teacher)
    student = load_engine("hf", tiny.undistilled)
    tok = ModelTokenizer(tiny.teacher)
    tasks = generate_tasks("pipeline", 4)
    prompts = [tok.encode_prompt(t.prompt) for t in tasks]
    k, info = 5, teacher.info
    answers = []
    for uid in range(6):  # 24 answers: several micro-batches
        gen = await student.generate(
            prompts, SamplingParams(max_tokens=8, top_logprobs=k, seed=uid)
        )
        for t, c in zip(tasks, gen, strict=True):
            answers.append(
                MinerAnswer(
                    Miner(uid, f"hk{uid}"),
                    t.task_id,
                    Cause.OK if uid != 3 else Cause.TIMEOUT,  # one miner failed its queries
                    token_ids=c.token_ids,
                    sampled_logprobs=c.sampled_logprobs.astype(np.float64),
                    top_ids=c.top_ids,
                    top_logprobs=c.top_logprobs.astype(np.float64),
                )
            )
    refs = await teacher.generate(prompts, SamplingParams(max_tokens=8, temperature=0.0))
    index = {t.task_id: i for i, t in enumerate(tasks)}

    def gate(a: MinerAnswer) -> Judged:
        j = Judged(a, index[a.task_id])
        if not a.cause.ok:
            j.fail(a.cause, "")
        judge.gate_format(j, vocab_size=info.vocab_size, k=k, max_tokens=8, cfg=cfg.verify)
        return j

    async def finish(pairs: list[tuple[Judged, Scored]]) -> None:
        await asyncio.to_thread(
            judge.score_batch_against_teacher,
            pairs,
            [r.sampled_logprobs for r in refs],
            tasks,
            tok,
            vocab_size=info.vocab_size,
            cfg=cfg.scoring,
        )

    pipe = ScoringPipeline(
        gate=gate, teacher=teacher, prompts=prompts, k=k, finish=finish, max_batch=7
    )
    for i, a in enumerate(answers):
        pipe.submit(a)
        if i % 5 == 4:
            await asyncio.sleep(0.02)  # arrivals spread out, as over a step's queries
    work = await pipe.results(answers)
    assert len(pipe.batch_sizes) > 1 and max(pipe.batch_sizes) <= 7
    assert [j.answer for j in work] == answers  # in submission order

    # the reference: every survivor in one teacher batch, judged answer by answer
    alive = [gate(a) for a in answers if a.cause.ok]
    scored = await teacher.score(
        [prompts[j.task] for j in alive], [j.answer.token_ids.tolist() for j in alive], k
    )
    for j, s in zip(alive, scored, strict=True):
        text = tok.decode(j.answer.token_ids.tolist(), skip_special_tokens=True)
        judge.score_against_teacher(
            j,
            s,
            refs[j.task].sampled_logprobs,
            tasks[j.task],
            text,
            vocab_size=info.vocab_size,
            cfg=cfg.scoring,
        )
    piped = [j for j in work if j.ok]
    assert [j.cause for j in work if not j.ok] == [Cause.TIMEOUT] * 4
    assert pipe.teacher_tokens == sum(len(j.answer.token_ids) for j in alive)
    for got, want in zip(piped, alive, strict=True):
        for f in ("s_kl", "s_ref", "kl", "rkl", "tv", "overlap", "correct"):
            assert getattr(got, f) == pytest.approx(getattr(want, f), abs=1e-6), f
        assert got.provenance["teacher"]["engine"] == "hf"
    await teacher.close()
    await student.close()
