"""One validator step, in the order the data flows (ARCHITECTURE.md §5).

metagraph -> miners + seeded prompts (rendered to ids) -> [teacher references | signed
streamed queries -> gates -> micro-batched teacher ``score`` -> divergences] -> spot checks with
committed models -> organic answers -> answer scores -> per-miner means -> EMA -> one atomic
commit.

The bracketed part overlaps (``pipeline.py``): each answer is gated and scored as it arrives,
while slower miners are still answering and the teacher still writes its references.

Nothing of the step is written before the final commit, so a step interrupted anywhere leaves
no trace and is redone from the same block seed after a restart. (The verifier's bookkeeping is
not the step's: a draw secret published, a committed model first seen; both are idempotent,
and the redone step draws the same checks with the same secret.)
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from neurons.validator import judge
from neurons.validator.availability import apply_verdicts
from neurons.validator.judge import Judged
from neurons.validator.metrics import ValidatorMetrics, export_step, report_lies
from neurons.validator.miner_client import MinerAnswer, Query, Target
from neurons.validator.organic import CURSOR_KEY, organic_round
from neurons.validator.participant import Miner
from neurons.validator.pipeline import ScoringPipeline
from neurons.validator.prompts import PromptSelector
from neurons.validator.queries import Baseline, baseline_answers, query_miners
from neurons.validator.spotcheck import ModelCache, spot_check
from neurons.validator.store import EmaRow, StepRow, Store
from neurons.validator.verifier import Verifier, check_rows
from scoring import aggregate, speed, verify
from scoring.causes import Role
from subnet.chain.protocol import SubnetReads
from subnet.chain.types import Commitment, MetagraphView
from subnet.config import SubnetConfig
from subnet.engine import Engine, SamplingParams, Scored
from subnet.tokenizer import ModelTokenizer

log = logging.getLogger("subnet.validator.step")


@dataclass
class StepContext:
    """Everything a step needs; built once by the node (``main.py``) or a test."""

    cfg: SubnetConfig
    chain: SubnetReads  # a Chain; the step only reads the metagraph and identities
    netuid: int
    signer: Any  # the hotkey's request signer, resolved once: auth.hotkey_signer(wallet)
    hotkey: str
    teacher: Engine
    tokenizer: ModelTokenizer  # the teacher's: renders prompts, decodes answers
    store: Store
    metrics: ValidatorMetrics
    models: ModelCache
    session: aiohttp.ClientSession
    baseline: Baseline | None = None
    prompts: PromptSelector | None = None  # None: loaded from cfg.validator at the first step
    organic_inbox: Path | None = None  # the gateway's signed organic answers (None: none)
    verifier: Verifier | None = None  # secret draws, model fetching, bounded evidence


@dataclass(frozen=True)
class StepResult:
    step: int
    block: int
    n_answers: int
    means: dict[int, float]  # uid -> this step's mean score
    ema: dict[int, float]
    causes: dict[int, list[str]]  # miner uid -> its answers' cause codes
    baseline_score: float | None
    teacher_tokens: int
    teacher_seconds: float
    hotkeys: tuple[str, ...] = ()  # uid -> the hotkey ``ema[uid]`` was earned by
    baseline_causes: tuple[str, ...] = ()  # the baseline's answers' cause codes
    organic_causes: tuple[tuple[int, str], ...] = ()  # (uid, cause) of organic answers judged
    phases: tuple[tuple[str, float], ...] = ()  # (phase, wall seconds) in the order they ran


def pick_targets(mg: MetagraphView, self_hotkey: str, sample: int, seed: str) -> list[Target]:
    """Every other uid with a served endpoint, or a seeded sample of ``sample`` of them."""
    out = [
        Target(n.uid, n.hotkey, n.axon.url)
        for n in mg.neurons
        if n.hotkey != self_hotkey
        and n.axon is not None
        and n.axon.port > 0
        and n.axon.ip not in ("0.0.0.0", "::", "")
    ]
    if 0 < sample < len(out):
        out = sorted(random.Random(f"{seed}|miners").sample(out, sample), key=lambda t: t.uid)
    return out


async def run_step(ctx: StepContext, step: int, block: int, seed: str) -> StepResult:
    vc, t_start = ctx.cfg.validator, time.perf_counter()
    phases: dict[str, float] = {}

    def phase(name: str, since: float) -> float:
        now = time.perf_counter()
        phases[name] = now - since
        ctx.metrics.phase_seconds.labels(name).set(now - since)
        return now

    # 1. Who and what: the metagraph and the seeded, duplicate-free prompts (as token ids).
    mg = await ctx.chain.metagraph(ctx.netuid, max_age_blocks=1)
    targets = pick_targets(mg, ctx.hotkey, vc.sample_miners, seed)
    info = ctx.teacher.info
    if ctx.prompts is None:
        ctx.prompts = PromptSelector.from_config(vc, ctx.tokenizer, info)
    recent = ctx.store.recent_prompt_digests(vc.prompt_window)
    asked = ctx.prompts.select(seed, vc.tasks_per_step, recent)
    tasks, prompts = asked.tasks, asked.token_ids
    digest = judge.prompts_digest(tasks)
    k = min(vc.top_k, info.max_top_logprobs)
    # What the gates judge identities against, ready before the first answer: chain
    # commitments indexed once, and whether each committed model can be verified.
    identities = await ctx.chain.identities(ctx.netuid)
    records = verify.CommitmentIndex.of(_commitment_records(ctx, mg, identities))
    verdicts = await ctx.verifier.models(step, mg, identities, ctx.hotkey) if ctx.verifier else {}
    task_index = {task.task_id: i for i, task in enumerate(tasks)}
    t = phase("setup", t_start)

    # 2-5. Overlapped (pipeline.py): the teacher's greedy reference answers start now; every
    #      miner answers every task (concurrent, streamed, signed, timed); each answer, as it
    #      arrives, passes the cheap gates and joins the teacher's next micro-batch of
    #      teacher-forced scoring; each scored batch gets divergences and sub-scores at once.
    refs = asyncio.create_task(
        ctx.teacher.generate(prompts, SamplingParams(max_tokens=vc.max_tokens, temperature=0.0))
    )

    def gate(a: MinerAnswer) -> Judged:
        """Format, identity (chain commitments, first-committer rule), loops and termination
        on the miner's own claims, then the committed model's verdict; a failed query keeps
        its cause."""
        j = Judged(a, task_index[a.task_id])
        if not a.cause.ok:
            j.fail(a.cause, a.detail)
        judge.gate_format(
            j, vocab_size=info.vocab_size, k=k, max_tokens=vc.max_tokens, cfg=ctx.cfg.verify
        )
        judge.gate_identity(j, records)
        if a.who.role is Role.BASELINE and ctx.baseline is not None:
            j.digest = ctx.baseline.digest  # spot-checked with its own (pinned) engine
        judge.gate_termination(
            j,
            eos_token_ids=info.eos_token_ids,
            max_tokens=vc.max_tokens,
            score_cfg=ctx.cfg.scoring,
            verify_cfg=ctx.cfg.verify,
        )
        apply_verdicts([j], verdicts)  # a committed model that cannot be verified (or is not)
        return j

    async def finish(pairs: list[tuple[Judged, Scored]]) -> None:
        """Divergences of the whole batch in one vectorised pass, then sub-scores (off-loop)."""
        ref = await refs
        await asyncio.to_thread(
            judge.score_batch_against_teacher,
            pairs,
            [r.sampled_logprobs for r in ref],
            tasks,
            ctx.tokenizer,
            vocab_size=info.vocab_size,
            cfg=ctx.cfg.scoring,
        )

    queries = [
        Query(task.task_id, tuple(p), vc.max_tokens, k, vc.temperature, judge.query_seed(seed, i))
        for i, (task, p) in enumerate(zip(tasks, prompts, strict=True))
    ]
    pipe = ScoringPipeline(
        gate=gate,
        teacher=ctx.teacher,
        prompts=prompts,
        k=k,
        finish=finish,
        max_batch=vc.score_batch,
        min_batch=min(vc.score_batch_min, vc.score_batch),
    )
    try:
        answers = await query_miners(
            ctx.session, ctx.signer, ctx.hotkey, targets, queries, vc, seed, pipe.submit
        )
        if ctx.baseline is not None:
            baseline = await baseline_answers(ctx.baseline, queries)
            for a in baseline:
                pipe.submit(a)
            answers += baseline
        pipe.answers_done()
        t = phase("query", t)  # the last answer is in; much of the scoring is done by now
        work = await pipe.results(answers)
        await refs
    except BaseException:
        await pipe.cancel()
        raise
    finally:
        refs.cancel()
    t = phase("score_tail", t)
    teacher_tokens, teacher_seconds = pipe.teacher_tokens, pipe.teacher_seconds
    phases["teacher_busy"] = teacher_seconds  # inside query + score_tail, not after them
    if teacher_seconds > 0 and teacher_tokens:
        ctx.metrics.teacher_tokens_per_second.set(teacher_tokens / teacher_seconds)

    # 6. Spot checks: recompute the claims with the committed model, batched per model.
    draw = ctx.verifier.draw(block) if ctx.verifier else None
    await spot_check(work, ctx.models, info, prompts, seed, k, ctx.cfg, ctx.metrics, draw)
    t = phase("spot_check", t)

    # 6b. Organic answers the gateway handed over, signed by their miners: the same gates and
    #     spot checks; they never enter a mean, but a lie proven on one counts in full.
    organic = await organic_round(
        ctx.organic_inbox,
        ctx.store.get_meta(CURSOR_KEY),
        mg=mg,
        self_hotkey=ctx.hotkey,
        records=records,
        models=ctx.models,
        teacher=info,
        seed=seed,
        cfg=ctx.cfg,
        metrics=ctx.metrics,
    )
    t = phase("organic", t)

    # 7. Scores: speed relative to the best valid miner, the combined score, means, EMA.
    _speed(ctx, [j for j in work if j.answer.who.speed_scored])
    rows, evidence, answered = [], [], []
    for j in work:
        who = j.answer.who
        score = aggregate.answer_score(
            j.cause, j.s_kl, j.s_ref, j.s_speed if who.speed_scored else 1.0, ctx.cfg.scoring
        )
        rows.append(judge.answer_row(j, score))
        answered.append(aggregate.RoundAnswer(who.role, who.uid, score.score, j.cause))
        ctx.metrics.answers.labels(j.cause.value).inc()
        if j.cause.counts_against_miner:
            ctx.metrics.failures.labels(j.cause.value, who.key).inc()
            if isinstance(who, Miner) and j.answer.signature and j.answer.raw:
                evidence.append(judge.evidence_row(j, who))
    rows += organic.rows
    evidence += organic.evidence
    answered += organic.answered
    n = len(mg.neurons)
    counted = aggregate.score_round(answered, n)  # only the answers that count toward the EMA
    means, observed, caught = counted.means, counted.observed, counted.caught
    old = ctx.store.ema()
    old_hotkeys = [e.hotkey for e in old]
    prev = aggregate.reset_changed([e.ema for e in old], old_hotkeys, mg.hotkeys)
    held = aggregate.reset_changed([e.suspended for e in old], old_hotkeys, mg.hotkeys)
    upd = aggregate.advance_ema(
        prev,
        held,
        means,
        observed,
        caught,
        ctx.cfg.weights.ema_alpha,
        ctx.cfg.weights.lie_penalty_steps,
    )
    ema, means = upd.ema, np.where(upd.punished, 0.0, means)
    base_rows = [a.score for a in answered if a.role is Role.BASELINE]
    baseline_score = float(np.mean(base_rows)) if base_rows else None

    # 8. One transaction: the step row, its answers, evidence and the new EMA.
    latency = time.perf_counter() - t_start
    if ctx.verifier is not None:
        evidence = ctx.verifier.bound(evidence)
    ctx.store.commit_step(
        StepRow(step, block, seed, digest, len(targets), len(rows), baseline_score, latency),
        rows,
        evidence,
        [EmaRow(u, hk, float(ema[u]), int(upd.suspended[u])) for u, hk in enumerate(mg.hotkeys)],
        prompts=asked.rows,
        meta={CURSOR_KEY: organic.cursor} if organic.cursor is not None else None,
        checks=check_rows(work, draw),
    )
    if ctx.verifier is not None:
        ctx.verifier.after_commit(ctx.store, step, ctx.metrics)
    phase("commit", t)
    export_step(ctx.metrics, work, ema, observed, baseline_score, latency)
    report_lies(ctx.metrics, answered, caught, upd, ctx.cfg.weights.lie_penalty_steps)
    causes: dict[int, list[str]] = defaultdict(list)
    for r in rows:
        if isinstance(r.who, Miner):
            causes[r.who.uid].append(r.cause)
    return StepResult(
        step,
        block,
        len(rows),
        {u: float(means[u]) for u in np.flatnonzero(observed)},
        {u: float(ema[u]) for u in range(n)},
        dict(causes),
        baseline_score,
        teacher_tokens,
        teacher_seconds,
        hotkeys=tuple(mg.hotkeys),
        baseline_causes=tuple(r.cause for r in rows if r.who.role is Role.BASELINE),
        organic_causes=organic.causes,
        phases=tuple(phases.items()),
    )


def _commitment_records(
    ctx: StepContext, mg: MetagraphView, identities: dict[str, Commitment]
) -> list[verify.Commitment]:
    """Current chain commitments merged into first-seen records kept in the store."""
    from distill.identity import IdentityError, parse_identity

    live = set(mg.hotkeys)
    seen = []
    for hotkey, c in identities.items():
        if hotkey not in live:
            continue
        try:
            seen.append((hotkey, parse_identity(c.payload).digest, c.block))
        except IdentityError:
            continue  # a malformed commitment is the same as none: NO_COMMITMENT
    ctx.store.record_commitments(seen)
    return [verify.Commitment(h, d, b) for h, d, b in ctx.store.commitments(live)]


def _speed(ctx: StepContext, work: list[Judged]) -> None:
    timed = [j for j in work if j.answer.total_s is not None]
    if not timed:
        return
    total = np.array([j.answer.total_s for j in timed], dtype=np.float64)
    ttft = np.minimum(np.array([j.answer.ttft_s or 0.0 for j in timed]), total)
    s = speed.speed_scores(
        [len(j.answer.token_ids) for j in timed], ttft, total, [j.ok for j in timed], ctx.cfg.speed
    )
    for j, v in zip(timed, s, strict=True):
        j.s_speed = float(v)
