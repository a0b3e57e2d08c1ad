"""Organic answers in the validator's step: users' requests the gateway routed to miners.

The gateway hands over a fraction of the signed answers it served (``gateway.organic_fraction``,
drawn after each answer was complete, so no miner can tell which will be checked) through the
inbox (:mod:`neurons.validator.inbox`). Each step reads up to ``validator.organic_per_step`` of
them and judges each exactly as a synthetic answer: the miner's signature (bound to this
validator's hotkey as the caller), the wire format, the identity gates, the termination rules on
its own claims, and a spot check of its claimed distributions with the model its hotkey
committed (every handed-over answer is checked: the fraction was drawn by the gateway).

What counts (:func:`scoring.causes.counts_toward_lie_check`): an organic answer has no teacher
reference, so it is stored with score 0 under the ``organic`` role and never enters the mean; a
proven lie (``dist_mismatch``, ``fabricated``) on it voids the miner's round, resets its EMA and
suspends it exactly as one on a synthetic prompt, with the signed bytes kept as evidence.

An answer the validator cannot hold against the miner is skipped and counted, never scored: its
uid has changed hands since, the record's request is not one this validator signed, or the
signature does not verify (the inbox is a file, not evidence by itself).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from neurons.validator import judge
from neurons.validator.inbox import INBOX_FILE, OrganicRecord, cursor_text, read_inbox
from neurons.validator.judge import Judged
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.miner_client import MinerAnswer, parse_answer
from neurons.validator.participant import OrganicMiner
from neurons.validator.spotcheck import ModelCache, spot_check
from neurons.validator.store import AnswerRow, EvidenceRow
from scoring import aggregate, verify
from scoring.aggregate import RoundAnswer
from scoring.causes import Cause, Role
from subnet import auth
from subnet.chain.types import MetagraphView
from subnet.config import SubnetConfig
from subnet.engine import EngineInfo
from subnet.errors import ProtocolError, StateError

log = logging.getLogger("subnet.validator.organic")

CURSOR_KEY = "organic_cursor"
TASK_PREFIX = "organic:"


def task_id(record: OrganicRecord) -> str:
    """``organic:<inbox id>:<request id>``: unique per record, searchable by request id."""
    return f"{TASK_PREFIX}{record.id}:{record.request_id[:64]}"


@dataclass(frozen=True)
class OrganicAsk:
    """What the miner was asked (read from the signed request body)."""

    prompt_ids: tuple[int, ...]
    max_tokens: int
    k: int
    ignore_eos: bool


@dataclass
class OrganicRound:
    """One step's organic answers, judged; what the step writes and counts."""

    rows: list[AnswerRow] = field(default_factory=list)
    evidence: list[EvidenceRow] = field(default_factory=list)
    answered: list[RoundAnswer] = field(default_factory=list)
    cursor: str | None = None  # the inbox cursor to commit with the step (None: unchanged)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> records not judged

    @property
    def causes(self) -> tuple[tuple[int, str], ...]:
        return tuple((int(r.who.uid or 0), r.cause) for r in self.rows)


def read_ask(body: bytes) -> OrganicAsk:
    """The signed request body -> what was asked; ProtocolError if it is not one we send."""
    try:
        data = json.loads(body)
        ext = data.get("subnet") or {}
        ask = OrganicAsk(
            tuple(int(t) for t in data["prompt"]),
            int(data["max_tokens"]),
            int(data["logprobs"]),
            bool(ext.get("ignore_eos", False)),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ProtocolError(f"not a gateway request body: {type(e).__name__}") from None
    if not ask.prompt_ids or ask.max_tokens < 1 or ask.k < 1:
        raise ProtocolError("a gateway request body without prompt, max_tokens or logprobs")
    return ask


def admit(
    record: OrganicRecord, mg: MetagraphView, self_hotkey: str
) -> tuple[MinerAnswer, OrganicAsk] | str:
    """The record as an answer to judge, or the reason it cannot be held against the miner."""
    current = mg.by_hotkey(record.hotkey)
    if current is None or current.uid != record.uid:
        return "uid_changed"
    try:
        ask = read_ask(record.request_body)
        prefix, fields = auth.split_stream(record.response)
        auth.verify_stream(
            record.response,
            miner_hotkey=record.hotkey,
            path=record.path,
            request_body=record.request_body,
            caller=self_hotkey,
            request_nonce=record.request_nonce,
        )
    except ProtocolError as e:
        log.warning("organic record %d skipped: %s", record.id, e)
        return "unverifiable"
    base = MinerAnswer(
        OrganicMiner(record.uid, record.hotkey),
        task_id(record),
        Cause.OK,
        ttft_s=record.ttft_s,
        total_s=record.total_s,
        request_body=record.request_body,
        raw=record.response,
        signature=fields,
    )
    return parse_answer(base, prefix), ask


async def organic_round(
    inbox: Path | None,
    cursor: str | None,
    *,
    mg: MetagraphView,
    self_hotkey: str,
    records: list[verify.Commitment] | verify.CommitmentIndex,
    models: ModelCache,
    teacher: EngineInfo,
    seed: str,
    cfg: SubnetConfig,
    metrics: ValidatorMetrics,
) -> OrganicRound:
    """Read the inbox after ``cursor`` and judge what is there (see the module docstring)."""
    out = OrganicRound()
    if inbox is None:
        return out
    try:
        batch = read_inbox(inbox, cursor, cfg.validator.organic_per_step)
    except StateError as e:  # the gateway's file, not ours: never stop a step for it
        log.warning("organic inbox not read: %s", e)
        return out
    if batch is None or not batch.records:
        return out
    out.cursor = cursor_text(batch.inbox, batch.records[-1].id)
    work: list[Judged] = []
    asks: list[OrganicAsk] = []
    skipped: dict[str, int] = defaultdict(int)
    for record in batch.records:
        admitted = admit(record, mg, self_hotkey)
        if isinstance(admitted, str):
            skipped[admitted] += 1
            metrics.organic.labels(f"skipped_{admitted}").inc()
            continue
        answer, ask = admitted
        j = Judged(answer, len(work))
        j.provenance["request_id"] = record.request_id
        if not answer.cause.ok:
            j.fail(answer.cause, answer.detail)
        work.append(j)
        asks.append(ask)
    out.skipped = dict(skipped)
    _gate(work, asks, records, teacher, cfg)
    await _spot_check(work, asks, models, teacher, seed, cfg, metrics)
    for j in work:
        who = j.answer.who
        assert isinstance(who, OrganicMiner)
        score = aggregate.answer_score(j.cause, 0.0, 0.0, 0.0, cfg.scoring)
        out.rows.append(judge.answer_row(j, score))
        out.answered.append(RoundAnswer(Role.ORGANIC, who.uid, 0.0, j.cause))
        metrics.organic.labels(j.cause.value).inc()
        if j.cause.counts_against_miner and j.answer.signature and j.answer.raw:
            body, raw, sig = j.answer.evidence()
            out.evidence.append(
                EvidenceRow(
                    who.uid, who.hotkey, j.answer.task_id, j.cause.value, j.detail, body, raw, sig
                )
            )
    return out


def _gate(
    work: Sequence[Judged],
    asks: Sequence[OrganicAsk],
    records: list[verify.Commitment] | verify.CommitmentIndex,
    teacher: EngineInfo,
    cfg: SubnetConfig,
) -> None:
    """Format, identity and termination, each with what this answer was asked."""
    for j, ask in zip(work, asks, strict=True):
        judge.gate_format(
            j, vocab_size=teacher.vocab_size, k=ask.k, max_tokens=ask.max_tokens, cfg=cfg.verify
        )
        judge.gate_identity(j, records)
        if not ask.ignore_eos:
            judge.gate_termination(
                j,
                eos_token_ids=teacher.eos_token_ids,
                max_tokens=ask.max_tokens,
                score_cfg=cfg.scoring,
                verify_cfg=cfg.verify,
            )


async def _spot_check(
    work: Sequence[Judged],
    asks: Sequence[OrganicAsk],
    models: ModelCache,
    teacher: EngineInfo,
    seed: str,
    cfg: SubnetConfig,
    metrics: ValidatorMetrics,
) -> None:
    """Every handed-over answer, with the synthetic path's ``spot_check`` (one call per
    (max_tokens, k): the termination rule and the recompute depend on what was asked)."""
    prompts = [list(a.prompt_ids) for a in asks]
    groups: dict[tuple[int, int], list[Judged]] = defaultdict(list)
    for j, ask in zip(work, asks, strict=True):
        groups[(ask.max_tokens, ask.k)].append(j)
    for (max_tokens, k), group in groups.items():
        checked = dataclasses.replace(
            cfg,
            verify=dataclasses.replace(cfg.verify, spot_check_fraction=1.0),
            validator=dataclasses.replace(cfg.validator, max_tokens=max_tokens),
        )
        await spot_check(group, models, teacher, prompts, seed, k, checked, metrics)


def organic_inbox(cfg: SubnetConfig) -> Path:
    """Where this validator's gateway writes its inbox (the same config runs both)."""
    return Path(cfg.gateway.state_dir).expanduser() / INBOX_FILE
