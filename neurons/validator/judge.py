"""Per-answer judgement on top of ``scoring``: gates in order, then the sub-scores.

The validator's step builds one :class:`Judged` per (miner, task) and passes it through the
gates in the order of ARCHITECTURE.md §5 (format, identity, termination and loops, teacher
divergence and reference, spot-check verification). The first failing gate sets the cause and
the answer scores 0; no gate raises on miner data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distill.identity import IdentityError, parse_identity
from distill.tasks import Task
from neurons.validator.miner_client import MinerAnswer
from neurons.validator.participant import Miner
from neurons.validator.store import AnswerRow, EvidenceRow
from scoring import reference, verify
from scoring.aggregate import AnswerScore, kl_score
from scoring.causes import Cause
from scoring.config import ScoreConfig, VerifyConfig
from scoring.divergence import DivergenceStats, divergence_stats, divergence_stats_many
from subnet.engine import Scored
from subnet.tokenizer import ModelTokenizer

# An identity the miner sent in its answer is stored with the answer; a real one is <= 384 bytes
# (distill.identity.MAX_V2_BYTES), anything longer is a hostile miner's filler.
MAX_STORED_IDENTITY = 512


@dataclass
class Judged:
    """One answer on its way through the gates (mutable while the step runs)."""

    answer: MinerAnswer
    task: int  # index into the step's tasks
    cause: Cause = Cause.OK
    detail: str = ""
    digest: str | None = None  # committed digest of the hotkey (from chain)
    name_hint: str = ""
    s_kl: float = 0.0
    s_ref: float = 0.0
    s_speed: float = 0.0
    kl: float | None = None
    rkl: float | None = None
    tv: float | None = None
    overlap: float | None = None
    correct: float | None = None
    spot_check: bool = False  # drawn for a spot check
    check_outcome: str = ""  # passed | failed | unavailable | error, once drawn
    verified: bool = False
    verify_dp: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.cause is Cause.OK

    def fail(self, cause: Cause, detail: str) -> None:
        if self.cause is Cause.OK:
            self.cause, self.detail = cause, detail[:500]


def prompts_digest(tasks: list[Task]) -> str:
    """sha256 over the step's task ids in order: what every score row is tied to."""
    return hashlib.sha256("\n".join(t.task_id for t in tasks).encode()).hexdigest()


def query_seed(seed: str, index: int) -> int:
    """The sampling seed asked of every miner for task ``index`` (same for all miners)."""
    h = hashlib.sha256(f"{seed}|sample|{index}".encode()).digest()
    return int.from_bytes(h[:4], "big")


def gate_format(j: Judged, *, vocab_size: int, k: int, max_tokens: int, cfg: VerifyConfig) -> None:
    a = j.answer
    if not j.ok:
        return
    v = verify.check_format(
        a.token_ids,
        a.sampled_logprobs,
        a.top_ids,
        a.top_logprobs,
        vocab_size=vocab_size,
        k=k,
        max_tokens=max_tokens,
        cfg=cfg,
    )
    j.fail(v.cause, v.detail)


def gate_identity(j: Judged, records: list[verify.Commitment] | verify.CommitmentIndex) -> None:
    """Committed digest known, answer names the same model, and its first committer (miners
    only: the baseline commits nothing, the validator knows its files). A step passes the
    records indexed once (``verify.CommitmentIndex``)."""
    if not j.ok or not j.answer.who.identity_gated:
        return
    claimed: str | None = None
    if j.answer.identity is not None:
        try:
            ident = parse_identity(j.answer.identity)
            claimed, j.name_hint = ident.digest, ident.name
        except IdentityError as e:
            j.fail(Cause.WRONG_MODEL, f"answer identity malformed: {e}")
            return
    index = (
        records
        if isinstance(records, verify.CommitmentIndex)
        else verify.CommitmentIndex.of(records)
    )
    cause = verify.identity_verdict(j.answer.who.hotkey, claimed, index)
    j.digest = index.current.get(j.answer.who.hotkey, j.digest)
    j.fail(cause, "" if cause.ok else f"identity verdict {cause.value}")


def gate_termination(
    j: Judged,
    *,
    eos_token_ids: tuple[int, ...],
    max_tokens: int,
    score_cfg: ScoreConfig,
    verify_cfg: VerifyConfig,
) -> None:
    """Loops, and EOS rules judged on the miner's own (format-valid) claims."""
    if not j.ok:
        return
    a = j.answer
    if reference.is_degenerate(a.token_ids, score_cfg):
        j.fail(Cause.DEGENERATE, "repeated n-gram share above the limit")
        return
    eos = verify.eos_logprobs_from_topk(a.top_ids, a.top_logprobs, eos_token_ids)
    cause = verify.check_eos(
        a.token_ids,
        a.sampled_logprobs,
        eos,
        eos_token_ids=eos_token_ids,
        max_tokens=max_tokens,
        cfg=verify_cfg,
    )
    j.fail(cause, "" if cause.ok else "termination rule (claimed distributions)")


def score_against_teacher(
    j: Judged,
    teacher: Scored,
    ref_logprobs: np.ndarray,
    task: Task,
    text: str,
    *,
    vocab_size: int,
    cfg: ScoreConfig,
    stats: DivergenceStats | None = None,
) -> None:
    """s_kl from the teacher's top-k at the miner's positions; s_ref from likelihood + truth.

    ``stats``: the divergences when already computed for a whole batch
    (``scoring.divergence.divergence_stats_many``, see :func:`divergence_inputs`).
    """
    if stats is None:
        stats = divergence_stats(*divergence_inputs(j, teacher), vocab_size, cfg.overlap_k)
    j.kl, j.rkl, j.tv, j.overlap = (
        stats.forward_kl,
        stats.reverse_kl,
        stats.total_variation,
        stats.topk_overlap,
    )
    j.s_kl = kl_score(stats.forward_kl, stats.reverse_kl, stats.topk_overlap, cfg)
    s_ll = reference.likelihood_score(teacher.target_logprobs, ref_logprobs, cfg.tau_ref)
    j.correct = None if task.answer is None else float(text.strip() == task.answer.strip())
    j.s_ref = reference.reference_score(s_ll, j.correct, cfg)


def score_batch_against_teacher(
    pairs: Sequence[tuple[Judged, Scored]],
    ref_logprobs: Sequence[np.ndarray],
    tasks: Sequence[Task],
    tokenizer: ModelTokenizer,
    *,
    vocab_size: int,
    cfg: ScoreConfig,
) -> None:
    """:func:`score_against_teacher` for a batch of (answer, teacher-scored) pairs: the
    divergences of all of them in one vectorised pass, the texts decoded in one call."""
    stats = divergence_stats_many(
        [divergence_inputs(j, s) for j, s in pairs], vocab_size, cfg.overlap_k
    )
    texts = tokenizer.decode_batch(
        [j.answer.token_ids.tolist() for j, _ in pairs], skip_special_tokens=True
    )
    for (j, s), st, text in zip(pairs, stats, texts, strict=True):
        score_against_teacher(
            j,
            s,
            ref_logprobs[j.task],
            tasks[j.task],
            text,
            vocab_size=vocab_size,
            cfg=cfg,
            stats=st,
        )
        j.provenance["teacher"] = s.provenance.to_dict()


def divergence_inputs(
    j: Judged, teacher: Scored
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(teacher ids, teacher logprobs, miner ids, miner logprobs) of one answer, [P, k] each."""
    a = j.answer
    return teacher.top_ids, teacher.top_logprobs, a.top_ids, a.top_logprobs


def verify_against_committed(
    j: Judged,
    recomputed: Scored,
    *,
    vocab_size: int,
    eos_token_ids: tuple[int, ...],
    max_tokens: int,
    cfg: VerifyConfig,
) -> None:
    """Claimed vs recomputed distributions, then the EOS rules under the committed model.

    The tolerances are those of the recompute's precision (the committed checkpoint's dtype).
    """
    a = j.answer
    cfg = cfg.for_dtype(recomputed.provenance.dtype)
    v = verify.verify_distributions(
        a.sampled_logprobs,
        a.top_ids,
        a.top_logprobs,
        recomputed.target_logprobs,
        recomputed.target_ranks,
        recomputed.top_ids,
        recomputed.top_logprobs,
        vocab_size=vocab_size,
        cfg=cfg,
    )
    j.verified, j.verify_dp = True, v.mean_abs_dp
    if not v.cause.ok:
        j.fail(
            v.cause,
            f"mean |dp| {v.mean_abs_dp:.4g}, top-k agreement "
            f"{v.topk_agreement:.3g}, min logprob {v.min_logprob:.3g}",
        )
        return
    cause = verify.check_eos(
        a.token_ids,
        recomputed.target_logprobs,
        recomputed.eos_logprobs,
        eos_token_ids=eos_token_ids,
        max_tokens=max_tokens,
        cfg=cfg,
    )
    j.fail(cause, "" if cause.ok else "termination rule (committed model)")


def answer_row(j: Judged, s: AnswerScore) -> AnswerRow:
    """The answer's record for the store."""
    a = j.answer
    return AnswerRow(
        who=a.who,
        task_id=a.task_id,
        score=s.score,
        cause=j.cause.value,
        detail=j.detail,
        gate=s.gate,
        s_kl=s.s_kl,
        s_ref=s.s_ref,
        s_speed=s.s_speed,
        kl=j.kl,
        rkl=j.rkl,
        tv=j.tv,
        overlap=j.overlap,
        correct=j.correct,
        n_tokens=len(a.token_ids),
        ttft_s=a.ttft_s,
        total_s=a.total_s,
        verified=j.verified,
        verify_dp=j.verify_dp,
        identity=None if a.identity is None else a.identity[:MAX_STORED_IDENTITY],
        provenance=j.provenance,
    )


def evidence_row(j: Judged, who: Miner) -> EvidenceRow:
    """The miner-signed bytes behind a failed answer, kept as evidence."""
    body, raw, sig = j.answer.evidence()
    a = j.answer
    return EvidenceRow(who.uid, who.hotkey, a.task_id, j.cause.value, j.detail, body, raw, sig)
