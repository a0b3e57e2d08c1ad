"""The validator's score for students, computed like the validator (``subnet distill eval``).

Each student answers every prompt the way a miner is asked to: streamed one answer at a time,
sampled at the validator's temperature with a per-prompt seed, reporting its raw top-k. Its
clock gives time to first token and tokens/s (after an untimed warm-up answer, so start-up
costs are not scored). The teacher answers greedily for the reference and teacher-forces each
student answer in one batched ``score``. Then the validator's own functions, in its order:
the format gate and the termination rules on the student's claims (``scoring.verify``,
``scoring.reference.is_degenerate``), ``s_kl`` from ``scoring.divergence.divergence_stats`` and
``scoring.aggregate.kl_score``, ``s_ref`` from ``scoring.reference``, ``s_speed`` from
``scoring.speed.speed_scores`` relative to the best valid answer among all students evaluated
together (the validator compares the miners of one step), and the answer's score from
``scoring.aggregate.answer_score``. Per student, every number is a mean over its answers.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from distill.tasks import Task, check_answer
from scoring.causes import Cause
from scoring.config import ScoreConfig, SpeedConfig, VerifyConfig

if TYPE_CHECKING:
    from scoring.divergence import DivergenceStats
    from subnet.engine import Completion, Engine, StreamingEngine


@dataclass(frozen=True)
class EvalResult:
    model: str
    tasks: int
    score: float  # the validator's per-answer score, gate included, mean over answers
    s_kl: float  # distillation term, 0 for gated answers
    s_ref: float  # reference term (teacher likelihood vs its own answer, and correctness)
    s_speed: float  # relative to the best valid answer among the students evaluated together
    forward_kl: float  # nats per position, over the answers that passed the gates
    reverse_kl: float
    total_variation: float
    topk_overlap: float
    reference_likelihood: float  # s_ll in (0, 1]
    correctness: float  # share of tasks with ground truth answered exactly (nan if none)
    tokens_per_s: float  # mean over answers of the streamed tokens/s (warm-up excluded)
    ttft_s: float  # mean time to first token (warm-up excluded)
    gated: dict[str, int] = field(default_factory=dict)  # answers zeroed, by cause

    def row(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class _Answer:
    completion: Completion
    ttft_s: float
    total_s: float
    cause: Cause = Cause.OK
    s_kl: float = 0.0
    s_ref: float = 0.0
    stats: DivergenceStats | None = None
    s_ll: float | None = None
    correct: bool | None = None


def answer_seed(seed: int, index: int) -> int:
    """The sampling seed of prompt ``index`` (the same for every student, like the validator)."""
    return int.from_bytes(hashlib.sha256(f"{seed}|eval|{index}".encode()).digest()[:4], "big")


async def _stream(engine: StreamingEngine, prompt: Sequence[int], params: object) -> _Answer:
    from subnet.engine import Completion

    t0 = time.perf_counter()
    ttft: float | None = None
    chunks = []
    async for chunk in engine.generate_stream(prompt, params):  # type: ignore[arg-type]
        if ttft is None and len(chunk.token_ids):
            ttft = time.perf_counter() - t0
        chunks.append(chunk)
    total = time.perf_counter() - t0
    whole = Completion(
        token_ids=np.concatenate([c.token_ids for c in chunks]),
        sampled_logprobs=np.concatenate([c.sampled_logprobs for c in chunks]),
        top_ids=np.concatenate([c.top_ids for c in chunks]),
        top_logprobs=np.concatenate([c.top_logprobs for c in chunks]),
        finish_reason=chunks[-1].finish_reason,
        provenance=chunks[-1].provenance,
    )
    return _Answer(whole, min(ttft if ttft is not None else total, total), total)


async def student_answers(
    student: StreamingEngine,
    prompts: Sequence[Sequence[int]],
    *,
    k: int,
    max_tokens: int,
    temperature: float,
    seed: int,
) -> list[_Answer]:
    """Every prompt answered as a miner answers a validator: one stream each, timed."""
    from subnet.engine import SamplingParams

    def params(i: int) -> SamplingParams:
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=temperature,
            seed=answer_seed(seed, i),
            top_logprobs=k,
        )

    await _stream(student, prompts[0], params(0))  # warm-up: not timed, not scored
    return [await _stream(student, p, params(i)) for i, p in enumerate(prompts)]


async def judge_answers(
    answers: list[_Answer],
    teacher: Engine,
    tasks: Sequence[Task],
    prompts: Sequence[Sequence[int]],
    references: Sequence[Completion],
    decode: Callable[[list[int]], str],
    *,
    k: int,
    max_tokens: int,
    score_cfg: ScoreConfig,
    verify_cfg: VerifyConfig,
) -> None:
    """Gates, then s_kl and s_ref against the teacher, in place (the validator's order)."""
    from scoring import reference, verify
    from scoring.aggregate import kl_score
    from scoring.divergence import divergence_stats

    info = teacher.info
    for task, a in zip(tasks, answers, strict=True):
        c = a.completion
        if task.answer is not None:  # counted for every answer, gated or not
            a.correct = check_answer(task, decode(c.token_ids.tolist()))
        fmt = verify.check_format(
            c.token_ids,
            c.sampled_logprobs,
            c.top_ids,
            c.top_logprobs,
            vocab_size=info.vocab_size,
            k=k,
            max_tokens=max_tokens,
            cfg=verify_cfg,
        )
        if not fmt.cause.ok:
            a.cause = fmt.cause
            continue
        if reference.is_degenerate(c.token_ids, score_cfg):
            a.cause = Cause.DEGENERATE
            continue
        eos = verify.eos_logprobs_from_topk(c.top_ids, c.top_logprobs, info.eos_token_ids)
        cause = verify.check_eos(
            c.token_ids,
            c.sampled_logprobs,
            eos,
            eos_token_ids=info.eos_token_ids,
            max_tokens=max_tokens,
            cfg=verify_cfg,
        )
        a.cause = cause
    alive = [(i, a) for i, a in enumerate(answers) if a.cause.ok]
    if not alive:  # every answer gated (an engine refuses an empty request): nothing to score
        return
    scored = await teacher.score(
        [prompts[i] for i, _ in alive], [a.completion.token_ids.tolist() for _, a in alive], k
    )
    for (i, a), s in zip(alive, scored, strict=True):
        c = a.completion
        stats = divergence_stats(
            s.top_ids,
            s.top_logprobs,
            c.top_ids,
            c.top_logprobs,
            info.vocab_size,
            score_cfg.overlap_k,
        )
        a.stats = stats
        a.s_kl = kl_score(stats.forward_kl, stats.reverse_kl, stats.topk_overlap, score_cfg)
        a.s_ll = reference.likelihood_score(
            s.target_logprobs, references[i].sampled_logprobs, score_cfg.tau_ref
        )
        correct = None if a.correct is None else float(a.correct)
        a.s_ref = reference.reference_score(a.s_ll, correct, score_cfg)


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def summarize(
    name: str, answers: list[_Answer], s_speed: np.ndarray, score_cfg: ScoreConfig
) -> EvalResult:
    """One row: the validator's answer scores and their parts, means over answers."""
    from scoring.aggregate import answer_score

    scores = [
        answer_score(a.cause, a.s_kl, a.s_ref, float(sp), score_cfg)
        for a, sp in zip(answers, s_speed, strict=True)
    ]
    ok = [a.stats for a in answers if a.cause.ok and a.stats is not None]
    gated: dict[str, int] = {}
    for a in answers:
        if not a.cause.ok:
            gated[a.cause.value] = gated.get(a.cause.value, 0) + 1
    return EvalResult(
        model=name,
        tasks=len(answers),
        score=_mean([s.score for s in scores]),
        s_kl=_mean([s.s_kl * s.gate for s in scores]),
        s_ref=_mean([s.s_ref * s.gate for s in scores]),
        s_speed=_mean([s.s_speed * s.gate for s in scores]),
        forward_kl=_mean([st.forward_kl for st in ok]),
        reverse_kl=_mean([st.reverse_kl for st in ok]),
        total_variation=_mean([st.total_variation for st in ok]),
        topk_overlap=_mean([st.topk_overlap for st in ok]),
        reference_likelihood=_mean([a.s_ll for a in answers if a.s_ll is not None]),
        correctness=_mean([float(a.correct) for a in answers if a.correct is not None]),
        tokens_per_s=_mean([len(a.completion.token_ids) / max(a.total_s, 1e-9) for a in answers]),
        ttft_s=_mean([a.ttft_s for a in answers]),
        gated=gated,
    )


async def evaluate_student(
    student: StreamingEngine,
    teacher: Engine,
    tasks: Sequence[Task],
    prompts: Sequence[Sequence[int]],
    decode: Callable[[list[int]], str],
    *,
    name: str,
    k: int = 16,
    max_tokens: int = 24,
    temperature: float = 0.0,
    seed: int = 0,
    score_cfg: ScoreConfig | None = None,
    speed_cfg: SpeedConfig | None = None,
    verify_cfg: VerifyConfig | None = None,
) -> EvalResult:
    """One loaded student against a loaded teacher on already rendered ``prompts`` (greedy by
    default); ``s_speed`` is relative to this student's own best answer."""
    from scoring.speed import speed_scores
    from subnet.engine import SamplingParams

    if not tasks:
        raise ValueError("no tasks to evaluate")
    if student.info.vocab_size != teacher.info.vocab_size:
        raise ValueError(
            f"vocab mismatch: student {student.info.vocab_size}, teacher {teacher.info.vocab_size}"
        )
    score_cfg, speed_cfg = score_cfg or ScoreConfig(), speed_cfg or SpeedConfig()
    verify_cfg = verify_cfg or VerifyConfig()
    references = await teacher.generate(
        prompts, SamplingParams(max_tokens=max_tokens, temperature=0.0)
    )
    answers = await student_answers(
        student, prompts, k=k, max_tokens=max_tokens, temperature=temperature, seed=seed
    )
    await judge_answers(
        answers,
        teacher,
        tasks,
        prompts,
        references,
        decode,
        k=k,
        max_tokens=max_tokens,
        score_cfg=score_cfg,
        verify_cfg=verify_cfg,
    )
    speed = speed_scores(
        [len(a.completion.token_ids) for a in answers],
        [a.ttft_s for a in answers],
        [a.total_s for a in answers],
        [a.cause.ok for a in answers],
        speed_cfg,
    )
    return summarize(name, answers, speed, score_cfg)


async def evaluate(
    students: Sequence[str | Path],
    teacher: str | Path,
    tasks: Sequence[Task],
    *,
    engine_kind: str = "vllm",
    k: int = 20,
    max_tokens: int = 16,
    temperature: float = 1.0,
    seed: int = 0,
    score_cfg: ScoreConfig | None = None,
    speed_cfg: SpeedConfig | None = None,
    verify_cfg: VerifyConfig | None = None,
) -> list[EvalResult]:
    """Load the teacher once and each student in turn; one EvalResult per student.

    ``k``, ``max_tokens`` and ``temperature`` are what the validator asks miners (its
    ``[validator]`` config); the configs are the subnet's ``[scoring]``, ``[speed]`` and
    ``[verify]`` sections (defaults when None).
    """
    from tokenizers import Tokenizer

    from distill.shards import TargetsError, tokenizer_hash
    from distill.targets import encode_prompts
    from scoring.speed import speed_scores
    from subnet.engine import SamplingParams, load_engine

    score_cfg, speed_cfg = score_cfg or ScoreConfig(), speed_cfg or SpeedConfig()
    verify_cfg = verify_cfg or VerifyConfig()
    if not tasks:
        raise TargetsError("no tasks to evaluate")
    for s in students:
        if tokenizer_hash(s) != tokenizer_hash(teacher):
            raise TargetsError(f"tokenizer mismatch: {s} does not use the teacher's tokenizer")
    prompts = encode_prompts(Path(teacher), tasks)
    t_engine = load_engine(engine_kind, teacher, max_top_logprobs=max(k, 20))  # type: ignore[arg-type]
    per_student: list[list[_Answer]] = []
    try:
        references = await t_engine.generate(
            prompts, SamplingParams(max_tokens=max_tokens, temperature=0.0)
        )
        for s in students:
            if t_engine.info.vocab_size != _vocab(s):
                raise TargetsError(f"vocab mismatch: {s} and the teacher {teacher}")
            tok = Tokenizer.from_file(str(Path(s) / "tokenizer.json"))
            s_engine = load_engine(engine_kind, s, max_top_logprobs=max(k, 20))  # type: ignore[arg-type]
            try:
                answers = await student_answers(
                    s_engine,
                    prompts,
                    k=k,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    seed=seed,
                )
            finally:
                await s_engine.close()
            await judge_answers(
                answers,
                t_engine,
                tasks,
                prompts,
                references,
                _decoder(tok),
                k=k,
                max_tokens=max_tokens,
                score_cfg=score_cfg,
                verify_cfg=verify_cfg,
            )
            per_student.append(answers)
    finally:
        await t_engine.close()
    flat = [a for answers in per_student for a in answers]
    speed = speed_scores(
        [len(a.completion.token_ids) for a in flat],
        [a.ttft_s for a in flat],
        [a.total_s for a in flat],
        [a.cause.ok for a in flat],
        speed_cfg,
    )
    out, start = [], 0
    for s, answers in zip(students, per_student, strict=True):
        out.append(summarize(str(s), answers, speed[start : start + len(answers)], score_cfg))
        start += len(answers)
    return out


def _decoder(tok: Any) -> Callable[[list[int]], str]:
    def decode(ids: list[int]) -> str:
        return str(tok.decode(ids, skip_special_tokens=True))

    return decode


def _vocab(model_dir: str | Path) -> int | None:
    import json

    try:
        return int(json.loads((Path(model_dir) / "config.json").read_text())["vocab_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


COLUMNS = (
    "score",
    "s_kl",
    "s_ref",
    "s_speed",
    "forward_kl",
    "reverse_kl",
    "correctness",
    "tokens_per_s",
    "ttft_s",
)


def format_table(results: Sequence[EvalResult]) -> str:
    """A plain-text table, one row per student; gated answers are listed under it."""

    def cell(r: EvalResult, c: str) -> str:
        v = getattr(r, c)
        return f"{v:,.0f}" if c == "tokens_per_s" else f"{v:.4f}"

    head = ["model", "tasks", *COLUMNS]
    rows = [
        [Path(r.model).name or r.model, str(r.tasks), *(cell(r, c) for c in COLUMNS)]
        for r in results
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    lines = [
        "  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)) for line in [head, *rows]
    ]
    for r in results:
        if r.gated:
            parts = ", ".join(f"{n} {c}" for c, n in sorted(r.gated.items()))
            lines.append(f"{Path(r.model).name or r.model}: answers scored 0 by a gate: {parts}")
    return "\n".join(lines)
