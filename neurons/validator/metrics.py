"""The validator's Prometheus series, in its own ``CollectorRegistry``.

Labels are bounded: uids (at most the subnet size), cause codes (a closed enum) and score
components; never hotkeys or free text.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from neurons.validator.participant import Miner
from scoring.aggregate import EmaUpdate, RoundAnswer
from subnet.metrics import NodeMetrics

if TYPE_CHECKING:
    from neurons.validator.judge import Judged

log = logging.getLogger("subnet.validator.step")

_STEP_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class ValidatorMetrics(NodeMetrics):
    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.score = Gauge(
            "validator_miner_score",
            "Last step's mean score component per miner",
            ("uid", "component"),
            registry=r,
        )
        self.ema = Gauge(
            "validator_miner_ema", "Per-miner EMA of step scores", ("uid",), registry=r
        )
        self.suspended = Gauge(
            "validator_miner_suspended_rounds",
            "Rounds a miner still earns nothing for after a proven lie",
            ("uid",),
            registry=r,
        )
        self.lies = Counter(
            "validator_proven_lies",
            "Rounds in which a miner was caught lying (EMA reset)",
            ("uid",),
            registry=r,
        )
        self.answers = Counter(
            "validator_answers",
            "Answers scored, by cause code",
            ("cause",),
            registry=r,
        )
        self.failures = Counter(
            "validator_verification_failures",
            "Answers zeroed, by cause and uid",
            ("cause", "uid"),
            registry=r,
        )
        self.spot_checks = Counter(
            "validator_spot_checks",
            "Spot checks by outcome (ok, failed, unavailable)",
            ("outcome",),
            registry=r,
        )
        self.spot_check_outcomes = Counter(
            "validator_spot_check_outcomes",
            "Drawn spot checks per miner by outcome (passed, failed, unavailable, error)",
            ("uid", "outcome"),
            registry=r,
        )
        self.model_ready = Gauge(
            "validator_model_ready",
            "1 when the miner's committed model is fetched and verified, else 0",
            ("uid",),
            registry=r,
        )
        self.model_unavailable = Counter(
            "validator_model_unavailable_steps",
            "Steps a miner's committed model could not be verified, by reason",
            ("uid", "reason"),
            registry=r,
        )
        self.model_cache_bytes = Gauge(
            "validator_model_cache_bytes", "Bytes in the committed-model disk cache", registry=r
        )
        self.evidence_bytes = Gauge(
            "validator_evidence_bytes", "Bytes of signed evidence kept in the state", registry=r
        )
        self.step_seconds = Histogram(
            "validator_step_seconds",
            "Wall time of one step",
            buckets=_STEP_BUCKETS,
            registry=r,
        )
        self.phase_seconds = Gauge(
            "validator_step_phase_seconds",
            "Wall time of each phase of the last step",
            ("phase",),
            registry=r,
        )
        self.teacher_tokens_per_second = Gauge(
            "validator_teacher_score_tokens_per_second",
            "Teacher-forced tokens scored per second in the last step's batched pass",
            registry=r,
        )
        self.steps = Counter("validator_steps", "Steps by outcome", ("outcome",), registry=r)
        self.weight_sets = Counter(
            "validator_weight_sets",
            "Weight-setting attempts by result (ok, mismatch, error)",
            ("result",),
            registry=r,
        )
        self.last_weights_block = Gauge(
            "validator_last_weights_block",
            "Block of the last successful weight set",
            registry=r,
        )
        self.baseline_score = Gauge(
            "validator_baseline_score",
            "Mean score of the validator's own reference student",
            registry=r,
        )
        self.block = Gauge("validator_block", "Chain head seen by the validator", registry=r)
        self.organic = Counter(
            "validator_organic_answers",
            "Organic answers from the gateway's inbox by cause (skipped_*: not held against "
            "the miner)",
            ("cause",),
            registry=r,
        )


def report_lies(
    m: ValidatorMetrics,
    answered: Sequence[RoundAnswer],
    caught: np.ndarray,
    upd: EmaUpdate,
    penalty_steps: int,
) -> None:
    """One WARNING line and a counter per caught liar; every suspension as a gauge."""
    for uid in np.flatnonzero(caught):
        how = sorted({a.cause.value for a in answered if a.uid == uid and a.cause.proves_lie})
        log.warning(
            "uid %d caught lying (%s): EMA reset, no reward for %d rounds",
            uid,
            ",".join(how),
            penalty_steps,
        )
        m.lies.labels(str(uid)).inc()
    for uid in np.flatnonzero(upd.punished | (upd.suspended > 0)):
        m.suspended.labels(str(uid)).set(int(upd.suspended[uid]))


def export_step(
    m: ValidatorMetrics,
    work: Sequence[Judged],
    ema: np.ndarray,
    observed: np.ndarray,
    baseline: float | None,
    latency: float,
) -> None:
    """A committed step's numbers: latency, per-miner score components and EMA, baseline."""
    m.step_seconds.observe(latency)
    m.steps.labels("ok").inc()
    per: dict[int, list[Judged]] = defaultdict(list)
    for j in work:
        if isinstance(j.answer.who, Miner):
            per[j.answer.who.uid].append(j)
    for uid, js in per.items():
        for name in ("s_kl", "s_ref", "s_speed"):
            m.score.labels(str(uid), name).set(float(np.mean([getattr(j, name) for j in js])))
    for uid in np.flatnonzero(observed):
        m.ema.labels(str(uid)).set(float(ema[uid]))
    if baseline is not None:
        m.baseline_score.set(baseline)
