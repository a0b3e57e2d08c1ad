"""Can this validator verify each miner's committed model? Decided once per step, per hotkey.

For every commitment on chain: a model this validator already has (pinned, or under its model
roots) is ready; a committed tokenizer other than the teacher's is ``WRONG_TOKENIZER`` at once
(the commitment says so, or the verified files do); anything else is asked of the fetcher
(``fetch.py``), which downloads in the background. A model that is not ready is **unverified**
while its grace window runs (``validator.model_grace_steps`` steps from when the commitment
was first seen): its answers are scored, marked unverified in their provenance, and a spot
check drawn on them counts ``unavailable``. Once the window is over it is
``MODEL_UNAVAILABLE``: every answer of that miner scores 0 until the model can be had.

The window is per hotkey, not per digest: a hotkey whose model was never verified keeps its
window's start when it commits another digest, so re-committing cannot buy grace forever.
Never silent: a WARNING when a miner's state changes (and every ``log_every`` steps while it is
not ready) and per-uid metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from distill.identity import MINER_SOURCE, IdentityError, ModelIdentity, parse_identity
from neurons.validator.fetch import FetchState, ModelFetcher, ModelStatus
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.sources import FetchTarget
from neurons.validator.store import ModelWatch, Store
from scoring.causes import Cause
from subnet.chain.types import Commitment, MetagraphView

if TYPE_CHECKING:
    from neurons.validator.judge import Judged
    from neurons.validator.spotcheck import ModelCache

log = logging.getLogger("subnet.validator.models")


@dataclass(frozen=True)
class ModelVerdict:
    """This step's verdict on one hotkey's committed model."""

    hotkey: str
    uid: int
    digest: str
    source: str  # the committed source: "miner" | "hf" (where it is fetched from if need be)
    state: str  # "ready" | "pending" | "failed" | "wrong_tokenizer" | "unavailable"
    cause: Cause | None  # MODEL_UNAVAILABLE / WRONG_TOKENIZER: every answer zeroed
    detail: str = ""  # one line for the log and the answers' cause detail
    why: str = ""  # the fetch's reason, without the step counts (what the store keeps)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def unverified(self) -> bool:
        """Not verifiable yet, within the grace window: answers scored, checks unavailable."""
        return self.cause is None and not self.ready


class Availability:
    """See the module docstring; ``store`` None keeps the grace bookkeeping in memory."""

    def __init__(
        self,
        models: ModelCache,
        fetcher: ModelFetcher | None,
        teacher_tokenizer: str,
        grace_steps: int,
        metrics: ValidatorMetrics,
        store: Store | None = None,
        *,
        log_every: int = 10,
    ) -> None:
        self.models = models
        self.fetcher = fetcher
        self.teacher_tokenizer = teacher_tokenizer
        self.grace_steps = grace_steps
        self.metrics = metrics
        self.store = store
        self.log_every = max(1, log_every)
        self._memory: dict[tuple[str, str], ModelWatch] = {}
        self._last: dict[str, tuple[str, str, int]] = {}  # hotkey -> (state, reason, logged at)

    async def assess(
        self, step: int, mg: MetagraphView, identities: Mapping[str, Commitment], self_hotkey: str
    ) -> dict[str, ModelVerdict]:
        """Every committed model of the metagraph's hotkeys (but ours), judged for ``step``."""
        out: dict[str, ModelVerdict] = {}
        watch = {(w.hotkey, w.digest): w for w in self._watch_rows()}
        latest: dict[str, ModelWatch] = {}
        for w in sorted(watch.values(), key=lambda w: w.first_step):
            latest[w.hotkey] = w
        updates: list[ModelWatch] = []
        for n in mg.neurons:
            c = identities.get(n.hotkey)
            if c is None or n.hotkey == self_hotkey:
                continue
            try:
                ident = parse_identity(c.payload)
            except IdentityError:
                continue  # the identity gate calls it NO_COMMITMENT
            url = n.axon.url if n.axon is not None and n.axon.port > 0 else ""
            verdict, status = await self._judge(ident, n.uid, n.hotkey, url, step, watch, latest)
            out[n.hotkey] = verdict
            prev = watch.get((n.hotkey, ident.digest))
            updates.append(self._row(verdict, step, prev, latest.get(n.hotkey)))
            self._report(verdict, status, step)
        self._save(updates, mg.hotkeys, watch)
        return out

    async def prefetch(
        self, mg: MetagraphView, identities: Mapping[str, Commitment], self_hotkey: str
    ) -> list[str]:
        """Start fetching every committed model this validator lacks (nothing is recorded);
        returns the digests being fetched."""
        out = []
        for n in mg.neurons:
            c = identities.get(n.hotkey)
            if c is None or n.hotkey == self_hotkey or self.fetcher is None:
                continue
            try:
                ident = parse_identity(c.payload)
            except IdentityError:
                continue
            wrong = ident.tokenizer_digest not in (None, self.teacher_tokenizer)
            if wrong or await self.models.is_local(ident.digest, ident.name):
                continue
            url = n.axon.url if n.axon is not None and n.axon.port > 0 else ""
            target = FetchTarget(ident.digest, ident.source or MINER_SOURCE, n.hotkey, url, n.uid)
            if not self.fetcher.want(target).ready:
                out.append(ident.digest)
        return out

    async def _judge(
        self,
        ident: ModelIdentity,
        uid: int,
        hotkey: str,
        url: str,
        step: int,
        watch: Mapping[tuple[str, str], ModelWatch],
        latest: Mapping[str, ModelWatch],
    ) -> tuple[ModelVerdict, ModelStatus | None]:
        digest = ident.digest
        source = (ident.source or MINER_SOURCE).kind
        if ident.tokenizer_digest is not None and ident.tokenizer_digest != self.teacher_tokenizer:
            return self._wrong_tokenizer(hotkey, uid, digest, source, "commitment"), None
        if await self.models.is_local(digest, ident.name):
            return ModelVerdict(hotkey, uid, digest, source, "ready", None, "held locally"), None
        if self.fetcher is None:
            status = ModelStatus(FetchState.FAILED, "no_fetcher", "fetching is off")
        else:
            status = self.fetcher.want(
                FetchTarget(digest, ident.source or MINER_SOURCE, hotkey, url, uid)
            )
        if status.ready:
            if status.tokenizer_digest != self.teacher_tokenizer:
                return self._wrong_tokenizer(hotkey, uid, digest, source, "files"), status
            return ModelVerdict(hotkey, uid, digest, source, "ready", None), status
        start = self._grace_from(hotkey, digest, step, watch, latest)
        waited = step - start
        why = f"{status.reason or status.state.value}" + (
            f": {status.detail}" if status.detail else ""
        )
        if waited >= self.grace_steps:
            detail = f"committed model not verified after {waited} steps ({why})"
            return (
                ModelVerdict(
                    hotkey,
                    uid,
                    digest,
                    source,
                    "unavailable",
                    Cause.MODEL_UNAVAILABLE,
                    detail,
                    why,
                ),
                status,
            )
        detail = f"unverified, grace {waited}/{self.grace_steps} steps ({why})"
        verdict = ModelVerdict(hotkey, uid, digest, source, status.state.value, None, detail, why)
        return verdict, status

    def _wrong_tokenizer(
        self, hotkey: str, uid: int, digest: str, source: str, where: str
    ) -> ModelVerdict:
        detail = f"the committed tokenizer ({where}) is not the teacher's"
        return ModelVerdict(
            hotkey, uid, digest, source, "wrong_tokenizer", Cause.WRONG_TOKENIZER, detail
        )

    @staticmethod
    def _grace_from(
        hotkey: str,
        digest: str,
        step: int,
        watch: Mapping[tuple[str, str], ModelWatch],
        latest: Mapping[str, ModelWatch],
    ) -> int:
        known = watch.get((hotkey, digest))
        if known is not None:
            return known.grace_from
        prev = latest.get(hotkey)
        if prev is not None and prev.verified_step is None:
            return prev.grace_from  # never verified before: no fresh window for a new digest
        return step

    def _row(
        self, v: ModelVerdict, step: int, prev: ModelWatch | None, last: ModelWatch | None
    ) -> ModelWatch:
        if prev is None:
            grace = step
            if last is not None and last.digest != v.digest and last.verified_step is None:
                grace = last.grace_from
            first = step
        else:
            first, grace = prev.first_step, prev.grace_from
        verified = prev.verified_step if prev is not None else None
        if v.ready and verified is None:
            verified = step  # the step it was first verified at
        return ModelWatch(
            v.hotkey, v.digest, v.source, first, grace, verified, v.state, v.why or v.detail, step
        )

    def _watch_rows(self) -> list[ModelWatch]:
        return self.store.model_watch() if self.store is not None else list(self._memory.values())

    def _save(
        self,
        rows: Sequence[ModelWatch],
        live: Iterable[str],
        known: Mapping[tuple[str, str], ModelWatch],
    ) -> None:
        """Write the rows whose state changed (a step that changes nothing writes nothing)."""
        changed = [
            w
            for w in rows
            if (old := known.get((w.hotkey, w.digest))) is None
            or (old.state, old.reason, old.verified_step, old.source)
            != (w.state, w.reason, w.verified_step, w.source)
        ]
        if self.store is not None:
            if changed:
                self.store.save_model_watch(changed)
            alive = set(live)
            if any(h not in alive for h, _ in known):
                self.store.forget_models(alive)
            return
        for w in changed:
            self._memory[(w.hotkey, w.digest)] = w

    def _report(self, v: ModelVerdict, status: ModelStatus | None, step: int) -> None:
        uid = str(v.uid)
        self.metrics.model_ready.labels(uid).set(1.0 if v.ready else 0.0)
        if v.ready:
            if self._last.get(v.hotkey, ("ready",))[0] != "ready":
                log.info("uid %d: committed model %s verified (%s)", v.uid, v.digest[:12], v.source)
            self._last[v.hotkey] = ("ready", "", step)
            return
        reason = status.reason if status is not None and status.reason else v.state
        self.metrics.model_unavailable.labels(uid, reason).inc()
        state, last_reason, at = self._last.get(v.hotkey, ("", "", -(10**9)))
        if (state, last_reason) != (v.state, reason) or step - at >= self.log_every:
            what = {
                "unavailable": "answers zeroed (model_unavailable)",
                "wrong_tokenizer": "answers zeroed (wrong_tokenizer)",
            }.get(v.state, "answers scored unverified")
            log.warning("uid %d: model %s %s: %s", v.uid, v.digest[:12], what, v.detail)
            self._last[v.hotkey] = (v.state, reason, step)


def apply_verdicts(work: Iterable[Judged], verdicts: Mapping[str, ModelVerdict]) -> None:
    """Zero the answers of miners whose model cannot be verified (past the grace window or a
    wrong tokenizer); mark the others unverified in their provenance."""
    for j in work:
        who = j.answer.who
        if not who.identity_gated:
            continue
        v = verdicts.get(who.hotkey)
        if v is None or (j.digest is not None and j.digest != v.digest):
            continue
        if v.cause is not None:
            j.fail(v.cause, v.detail)
        elif v.unverified:
            j.provenance["model"] = v.detail
