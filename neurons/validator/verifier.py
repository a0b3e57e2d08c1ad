"""Everything a step needs to verify miners on a real network, in one object the node builds.

* which answers are checked: the secret draw of the step's epoch (``draw.py``);
* whether each committed model can be checked: fetched and verified, or unverified within its
  grace window, or zeroing the miner (``availability.py`` over ``fetch.py``);
* what evidence is kept, and for how long (``evidence.py``, ``Store.prune_evidence``).

A step without a verifier (tests, benchmarks) draws with a throwaway secret, fetches nothing and
keeps all its evidence: the pre-network behaviour.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from distill.identity import IdentityError
from distill.manifest import tokenizer_digest
from neurons.validator.availability import Availability, ModelVerdict
from neurons.validator.diskcache import DiskCache
from neurons.validator.draw import EpochSecret, SpotDraws
from neurons.validator.evidence import bound_evidence
from neurons.validator.fetch import ModelFetcher
from neurons.validator.judge import Judged
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.sources import HfSource, MinerSource, Source
from neurons.validator.store import EvidenceRetention, EvidenceRow, SpotCheckRow, Store
from scoring.causes import Cause
from subnet.chain.protocol import Chain
from subnet.chain.types import Commitment, MetagraphView
from subnet.config import SubnetConfig, ValidatorConfig
from subnet.errors import ChainError, ConfigError

if TYPE_CHECKING:
    from neurons.validator.spotcheck import ModelCache

log = logging.getLogger("subnet.validator.verifier")
_NOT_EVIDENCE = {Cause.MODEL_UNAVAILABLE.value, Cause.WRONG_TOKENIZER.value}


@dataclass
class Verifier:
    draws: SpotDraws
    availability: Availability | None
    retention: EvidenceRetention
    step_bytes: int  # evidence kept per miner and step

    async def models(
        self, step: int, mg: MetagraphView, identities: Mapping[str, Commitment], hotkey: str
    ) -> dict[str, ModelVerdict]:
        if self.availability is None:
            return {}
        return await self.availability.assess(step, mg, identities, hotkey)

    def draw(self, block: int) -> EpochSecret:
        return self.draws.for_block(block)

    def bound(self, rows: Sequence[EvidenceRow]) -> list[EvidenceRow]:
        """The step's evidence within its caps; answers zeroed because the committed model
        could not be had prove nothing about the answer itself and are not kept."""
        kept = [e for e in rows if e.cause not in _NOT_EVIDENCE]
        return bound_evidence(kept, self.step_bytes, self.retention.lie_causes)

    async def prefetch(self, chain: Chain, netuid: int, hotkey: str, timeout: float) -> None:
        """Before the first step (never inside one): start fetching every committed model and
        wait up to ``timeout`` s for them, so the first steps can already check. A chain that
        does not answer only skips the wait (the steps fetch as they go)."""
        if self.availability is None or timeout <= 0:
            return
        try:
            mg = await chain.metagraph(netuid, max_age_blocks=0)
            identities = await chain.identities(netuid)
        except ChainError as e:
            log.warning("prefetch of committed models skipped: %s", e)
            return
        digests = await self.availability.prefetch(mg, identities, hotkey)
        fetcher = self.availability.fetcher
        if not digests or fetcher is None:
            return
        log.info("fetching %d committed models before the first step", len(digests))
        if not await fetcher.wait(digests, timeout):
            log.warning("committed models still downloading after %.0f s: going on", timeout)
        await asyncio.sleep(0)

    def after_commit(self, store: Store, step: int, metrics: ValidatorMetrics) -> None:
        store.prune_evidence(step, self.retention)
        metrics.evidence_bytes.set(store.evidence_bytes())
        fetcher = self.availability.fetcher if self.availability is not None else None
        if fetcher is not None:
            metrics.model_cache_bytes.set(fetcher.cache.used_bytes)


def check_rows(work: Sequence[Judged], draw: EpochSecret | None) -> list[SpotCheckRow]:
    """The step's drawn checks for the store (the draw's epoch ties each to its secret)."""
    epoch = draw.epoch if draw is not None else -1
    return [
        SpotCheckRow(j.answer.who, j.answer.task_id, j.check_outcome or "unavailable", epoch)
        for j in work
        if j.spot_check
    ]


def build_fetcher(vc: ValidatorConfig, wallet: Any, session: aiohttp.ClientSession) -> ModelFetcher:
    """The node's fetcher: its disk cache, the miner and Hugging Face sources."""
    root = vc.model_cache_dir or str(Path(vc.state_dir).expanduser() / "models")
    cache = DiskCache(root, vc.model_cache_bytes)
    sources: dict[str, Source] = {
        "miner": MinerSource(
            session,
            wallet,
            stall_timeout=vc.fetch_stall_timeout,
            max_total_bytes=vc.model_cache_bytes,
        ),
        "hf": HfSource(vc.hf_endpoint, timeout=vc.fetch_stall_timeout),
    }
    return ModelFetcher(cache, sources, concurrency=vc.fetch_concurrency)


async def build_verifier(
    cfg: SubnetConfig,
    chain: Chain,
    store: Store,
    models: ModelCache,
    fetcher: ModelFetcher | None,
    metrics: ValidatorMetrics,
) -> Verifier:
    """Draw secrets (published now for this epoch and the next), model availability against
    the teacher's tokenizer, and the evidence limits, from the config."""
    vc = cfg.validator
    try:
        teacher_tokenizer = tokenizer_digest(vc.teacher)
    except IdentityError as e:
        raise ConfigError(f"validator.teacher: {e}") from None
    epoch_blocks = vc.secret_epoch_blocks or await chain.tempo(cfg.chain.netuid) or 360
    draws = SpotDraws(store, epoch_blocks)
    draws.prepare(await chain.block())
    availability = Availability(
        models, fetcher, teacher_tokenizer, vc.model_grace_steps, metrics, store
    )
    retention = EvidenceRetention(
        vc.evidence_keep_steps,
        vc.evidence_keep_lie_steps,
        vc.evidence_max_bytes,
        tuple(c.value for c in Cause if c.proves_lie),
    )
    return Verifier(draws, availability, retention, vc.evidence_step_bytes)
