"""The validator's numbers for one student (``subnet distill eval``), through the engine seam.

The student answers each prompt greedily and reports its top-k, like a miner; the teacher
teacher-forces those answers (one batched ``score``) and answers the prompts itself for the
reference. Then the same ``scoring`` functions the validator runs: forward/reverse KL, total
variation and top-k overlap per answer (``scoring.divergence.divergence_stats``), the teacher
likelihood of the answer against its own reference (``scoring.reference.likelihood_score``),
and exact-answer correctness (``distill.tasks.check_answer``). Every number is a mean over
answers, as the validator averages per answer before aggregating.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from distill.tasks import Task, check_answer

if TYPE_CHECKING:
    from subnet.engine import Engine


@dataclass(frozen=True)
class EvalResult:
    model: str
    tasks: int
    forward_kl: float  # nats per position, the distillation term
    reverse_kl: float
    total_variation: float
    topk_overlap: float
    reference_likelihood: float  # s_ll in (0, 1]: teacher likelihood vs its own answer
    correctness: float  # share of tasks with ground truth answered exactly (nan if none)
    tokens_per_s: float  # student generation throughput over the whole batch (after warm-up)

    def row(self) -> dict[str, float | int | str]:
        return asdict(self)


async def evaluate_student(
    student: Engine,
    teacher: Engine,
    tasks: Sequence[Task],
    prompts: Sequence[Sequence[int]],
    decode: object,
    *,
    name: str,
    k: int = 16,
    max_tokens: int = 24,
) -> EvalResult:
    """Score ``student``'s greedy answers to ``tasks`` against ``teacher`` (both loaded)."""
    from scoring.config import ScoreConfig
    from scoring.divergence import divergence_stats
    from scoring.reference import likelihood_score
    from subnet.engine import SamplingParams

    if not tasks:
        raise ValueError("no tasks to evaluate")
    if student.info.vocab_size != teacher.info.vocab_size:
        raise ValueError(
            f"vocab mismatch: student {student.info.vocab_size}, teacher {teacher.info.vocab_size}"
        )
    score_cfg = ScoreConfig()
    greedy = SamplingParams(max_tokens=max_tokens, temperature=0.0, top_logprobs=k)
    # Warm-up, untimed: an engine's first call (vLLM's graph capture and allocator, torch's
    # kernels) cost 100x the steady state and flipped which model looked faster.
    await student.generate(
        [prompts[0]], SamplingParams(max_tokens=min(2, max_tokens), temperature=0.0, top_logprobs=k)
    )
    t0 = time.perf_counter()
    answers = await student.generate(prompts, greedy)
    elapsed = time.perf_counter() - t0
    references = await teacher.generate(
        prompts, SamplingParams(max_tokens=max_tokens, temperature=0.0)
    )
    scored = await teacher.score(prompts, [a.token_ids.tolist() for a in answers], k)
    ref_scored = await teacher.score(prompts, [r.token_ids.tolist() for r in references], 0)

    stats, s_ll, correct = [], [], []
    for task, a, s, r in zip(tasks, answers, scored, ref_scored, strict=True):
        stats.append(
            divergence_stats(
                s.top_ids,
                s.top_logprobs,
                a.top_ids,
                a.top_logprobs,
                teacher.info.vocab_size,
                score_cfg.overlap_k,
            )
        )
        s_ll.append(likelihood_score(s.target_logprobs, r.target_logprobs, score_cfg.tau_ref))
        if task.answer is not None:
            text = decode(a.token_ids.tolist())  # type: ignore[operator]
            correct.append(check_answer(task, text))
    return EvalResult(
        model=name,
        tasks=len(tasks),
        forward_kl=float(np.mean([x.forward_kl for x in stats])),
        reverse_kl=float(np.mean([x.reverse_kl for x in stats])),
        total_variation=float(np.mean([x.total_variation for x in stats])),
        topk_overlap=float(np.mean([x.topk_overlap for x in stats])),
        reference_likelihood=float(np.mean(s_ll)),
        correctness=float(np.mean(correct)) if correct else float("nan"),
        tokens_per_s=sum(len(a.token_ids) for a in answers) / max(elapsed, 1e-9),
    )


async def evaluate(
    students: Sequence[str | Path],
    teacher: str | Path,
    tasks: Sequence[Task],
    *,
    engine_kind: str = "vllm",
    k: int = 16,
    max_tokens: int = 24,
) -> list[EvalResult]:
    """Load the teacher once and each student in turn; one EvalResult per student."""
    from tokenizers import Tokenizer

    from distill.shards import TargetsError, tokenizer_hash
    from distill.targets import encode_prompts
    from subnet.engine import load_engine

    for s in students:
        if tokenizer_hash(s) != tokenizer_hash(teacher):
            raise TargetsError(f"tokenizer mismatch: {s} does not use the teacher's tokenizer")
    prompts = encode_prompts(Path(teacher), tasks)
    t_engine = load_engine(engine_kind, teacher, max_top_logprobs=max(k, 20))  # type: ignore[arg-type]
    results = []
    try:
        for s in students:
            tok = Tokenizer.from_file(str(Path(s) / "tokenizer.json"))
            s_engine = load_engine(engine_kind, s, max_top_logprobs=max(k, 20))  # type: ignore[arg-type]
            try:
                results.append(
                    await evaluate_student(
                        s_engine,
                        t_engine,
                        tasks,
                        prompts,
                        lambda ids, tok=tok: tok.decode(ids, skip_special_tokens=True),
                        name=str(s),
                        k=k,
                        max_tokens=max_tokens,
                    )
                )
            finally:
                await s_engine.close()
    finally:
        await t_engine.close()
    return results


def format_table(results: Sequence[EvalResult]) -> str:
    """A plain-text table, one row per student."""
    cols = (
        "forward_kl",
        "reverse_kl",
        "total_variation",
        "topk_overlap",
        "reference_likelihood",
        "correctness",
        "tokens_per_s",
    )
    head = ["model", "tasks", *cols]
    rows = [
        [
            Path(r.model).name or r.model,
            str(r.tasks),
            *(
                f"{getattr(r, c):.4f}" if c != "tokens_per_s" else f"{r.tokens_per_s:,.0f}"
                for c in cols
            ),
        ]
        for r in results
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    lines = [
        "  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)) for line in [head, *rows]
    ]
    return "\n".join(lines)
