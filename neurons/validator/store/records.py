"""The typed rows the store writes and reads: frozen, so what a caller holds cannot change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from neurons.validator.participant import Participant
from scoring.causes import Cause


@dataclass(frozen=True)
class StepRow:
    step: int
    block: int
    seed: str
    prompts_digest: str
    n_miners: int
    n_answers: int
    baseline_score: float | None
    latency_s: float


@dataclass(frozen=True)
class PromptRow:
    """One prompt a step asked: where it came from and what it was (content digest)."""

    index: int  # position in the step's prompts
    task_id: str
    source: str  # "synthetic" or the prompt file as configured
    dataset_digest: str
    prompt_digest: str


@dataclass(frozen=True)
class AnswerRow:
    """One answer's record; ``provenance`` is JSON-able (engine, versions, model)."""

    who: Participant
    task_id: str
    score: float
    cause: str
    detail: str
    gate: float
    s_kl: float
    s_ref: float
    s_speed: float
    kl: float | None
    rkl: float | None
    tv: float | None
    overlap: float | None
    correct: float | None
    n_tokens: int
    ttft_s: float | None
    total_s: float | None
    verified: bool
    verify_dp: float | None
    identity: str | None
    provenance: dict[str, Any]


@dataclass(frozen=True)
class EvidenceRow:
    """A failed verification with the miner-signed bytes that prove what it sent."""

    uid: int
    hotkey: str
    task_id: str
    cause: str
    detail: str
    request_body: str
    response_b64: str
    signature: str  # JSON of the response signature fields


@dataclass(frozen=True)
class EmaRow:
    uid: int
    hotkey: str
    ema: float
    suspended: int = 0  # rounds left without reward after a proven lie


@dataclass(frozen=True)
class StoredAnswer:
    """One answer as read back: who gave it in which step, its scores and its cause."""

    step: int
    who: Participant
    task_id: str
    score: float
    s_kl: float
    s_ref: float
    s_speed: float
    cause: Cause
    verified: bool = False  # its claims were recomputed with the committed model (spot check)


@dataclass(frozen=True)
class EmaPoint:
    """One uid's EMA as it stood after one step (``ema_history``)."""

    step: int
    uid: int
    hotkey: str
    ema: float
    suspended: int


@dataclass(frozen=True)
class StoredWeightSet:
    """One attempt to set weights: the normalised weights the validator computed after
    ``step`` (burn to the owner uid included) and whether the chain took them."""

    block: int
    step: int
    weights: dict[int, float]
    success: bool
    error: str


@dataclass(frozen=True)
class SpotCheckRow:
    """One answer the secret draw picked for a spot check, and what the check found:
    ``passed``, ``failed``, ``unavailable`` (the committed model could not be had), ``error``
    (the validator's own engine failed) or ``skipped`` (the answer had already failed a gate)."""

    who: Participant
    task_id: str
    outcome: str
    epoch: int  # the draw secret's epoch (its secret is revealed once the epoch is over)


@dataclass(frozen=True)
class SpotSecret:
    """A spot-check draw secret as published: its commitment (sha256, published at
    ``published_block``, before any draw used it) and, once its epoch is over, the secret."""

    epoch: int
    commitment: str
    published_block: int
    secret: str | None  # hex; None until revealed
    revealed_block: int | None


@dataclass(frozen=True)
class ModelWatch:
    """What the validator knows of one hotkey's committed model: where it comes from, since
    which step it is wanted (``grace_from``: the grace window's start), whether it is verified."""

    hotkey: str
    digest: str
    source: str  # the committed source: "miner" | "hf"
    first_step: int
    grace_from: int
    verified_step: int | None
    state: str  # "pending" | "ready" | "failed" | "wrong_tokenizer" | "unavailable"
    reason: str
    last_step: int


@dataclass(frozen=True)
class EvidenceRetention:
    """How long evidence is kept: ordinary failures ``keep_steps`` steps, proven lies
    ``keep_lie_steps``, and never more than ``max_bytes`` in all (oldest ordinary first)."""

    keep_steps: int
    keep_lie_steps: int
    max_bytes: int
    lie_causes: tuple[str, ...]
