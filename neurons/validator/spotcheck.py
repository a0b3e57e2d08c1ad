"""Spot checks: recompute a miner's claims with the model it committed, kept in a small LRU.

A miner commits its model's digest (``distill/identity.py``); the validator takes the verified
folder with that digest from its fetcher's disk cache (``fetch.py``), or from a folder under its
optional model roots whose files hash to it (the name is only a hint for where to look first),
loads it on the configured engine and keeps at most ``capacity`` loaded, closing the least
recently used. Digests are cached per (path, mtime, size) so a root is hashed once, not every
step. A digest nobody here has is ``None``: the drawn check then counts ``unavailable`` (the
grace rule in ``availability.py`` decides what that costs the miner); a folder that fails to
load is reported to the fetcher, never raised into the step.

Which answers are checked is drawn from the validator's secret (``draw.py``); each drawn check
leaves its outcome on the answer (``Judged.check_outcome``) for the store and the metrics.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from distill.identity import IdentityError, model_digest
from neurons.validator import judge
from neurons.validator.draw import EpochSecret
from neurons.validator.fetch import ModelFetcher
from neurons.validator.judge import Judged
from neurons.validator.metrics import ValidatorMetrics
from scoring.causes import Cause
from subnet.config import SubnetConfig
from subnet.engine import Engine, EngineInfo

log = logging.getLogger("subnet.validator.spotcheck")

Loader = Callable[[Path], Awaitable[Engine]]


def _stamp(path: Path) -> tuple[float, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return (
        max((p.stat().st_mtime for p in files), default=0.0),
        sum(p.stat().st_size for p in files),
    )


class ModelCache:
    """digest -> loaded Engine, bounded; see the module docstring."""

    def __init__(
        self,
        roots: Sequence[str | Path],
        capacity: int,
        loader: Loader,
        fetcher: ModelFetcher | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.roots = [Path(r).expanduser() for r in roots if str(r)]
        self.capacity = capacity
        self._loader = loader
        self._loaded: OrderedDict[str, Engine] = OrderedDict()
        self._pinned: dict[str, Engine] = {}
        self._digests: dict[Path, tuple[tuple[float, int], str | None]] = {}
        self._lock = asyncio.Lock()
        self.fetcher = fetcher
        self.loads = 0

    def add_root(self, path: str | Path) -> None:
        self.roots.append(Path(path).expanduser())

    def _digest_of(self, path: Path) -> str | None:
        stamp = _stamp(path)
        cached = self._digests.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            digest: str | None = model_digest(path)
        except IdentityError:
            digest = None
        self._digests[path] = (stamp, digest)
        return digest

    def candidates(self, name_hint: str = "") -> list[Path]:
        """Model folders under the roots (a root may itself be a model); hinted name first."""
        out: list[Path] = []
        for root in self.roots:
            if (root / "config.json").is_file():
                out.append(root)
            if root.is_dir():
                out.extend(sorted(p for p in root.iterdir() if (p / "config.json").is_file()))
        hint = name_hint.rsplit("/", 1)[-1]
        return sorted(dict.fromkeys(out), key=lambda p: p.name != hint)

    async def locate(self, digest: str, name_hint: str = "") -> Path | None:
        for path in self.candidates(name_hint):
            found = await asyncio.to_thread(self._digest_of, path)
            if found == digest:
                return path
        return None

    async def is_local(self, digest: str, name_hint: str = "") -> bool:
        """Whether this validator holds the model without fetching (pinned, or in a root)."""
        if digest in self._pinned:
            return True
        return bool(self.roots) and await self.locate(digest, name_hint) is not None

    def loaded(self) -> list[str]:
        """Digests held loaded (the disk cache must not evict their files)."""
        return [*self._loaded, *self._pinned]

    async def get(self, digest: str, name_hint: str = "") -> Engine | None:
        """The loaded model with this digest, or None if neither a root nor the fetcher's
        cache holds it (or it failed to load: reported to the fetcher, retried later)."""
        if digest in self._pinned:
            return self._pinned[digest]
        async with self._lock:
            engine = self._loaded.get(digest)
            if engine is not None:
                self._loaded.move_to_end(digest)
                return engine
            path = await self.locate(digest, name_hint) if self.roots else None
            if path is None and self.fetcher is not None:
                status = self.fetcher.status(digest)
                path = status.path if status.ready else None
            if path is None:
                return None
            while len(self._loaded) >= self.capacity:
                old_digest, old = self._loaded.popitem(last=False)
                log.info("evicting committed model %s", old_digest[:12])
                await old.close()
            try:
                engine = await self._loader(path)
            except Exception as e:  # a broken folder (or our memory): never the whole step
                log.warning("committed model %s does not load: %s", digest[:12], e)
                if self.fetcher is not None:
                    self.fetcher.mark_failed(digest, "load_failed", f"{type(e).__name__}: {e}")
                return None
            if self.fetcher is not None:
                self.fetcher.touch(digest)
            self.loads += 1
            self._loaded[digest] = engine
            return engine

    def pin(self, digest: str, engine: Engine) -> None:
        """Reuse an engine loaded elsewhere (teacher, baseline): never evicted, never closed."""
        self._pinned[digest] = engine

    async def close(self) -> None:
        async with self._lock:
            while self._loaded:
                _, engine = self._loaded.popitem()
                await engine.close()


def _outcome(j: Judged, outcome: str, metrics: ValidatorMetrics) -> None:
    j.check_outcome = outcome
    metrics.spot_check_outcomes.labels(j.answer.who.key, outcome).inc()


async def spot_check(
    work: Sequence[Judged],
    models: ModelCache,
    teacher: EngineInfo,
    prompts: Sequence[Sequence[int]],
    seed: str,
    k: int,
    cfg: SubnetConfig,
    metrics: ValidatorMetrics,
    draw: EpochSecret | None = None,
) -> None:
    """Recompute the drawn answers' claims with each miner's committed model (one batched
    ``score`` per model) and judge them; a failure of our own engine is ``VALIDATOR_ERROR``.

    ``draw``: the step's secret (``draw.py``); None draws with a throwaway one (tests,
    benchmarks). A drawn answer that already failed a gate is ``skipped`` (it scores 0 anyway)."""
    secret = draw or EpochSecret(-1, secrets.token_bytes(32), "")
    fraction = cfg.verify.spot_check_fraction
    info = teacher
    groups: dict[str, list[Judged]] = defaultdict(list)
    for j in work:
        if not secret.picked(seed, j.answer.who.key, j.answer.task_id, fraction):
            continue
        j.spot_check = True  # every drawn answer is recorded, so a revealed secret audits all
        if j.ok and j.digest:
            groups[j.digest].append(j)
        else:  # it already scores 0 (or names no model): nothing to recompute
            _outcome(j, "skipped", metrics)
    for digest, group in groups.items():
        engine = await models.get(digest, group[0].name_hint)
        if engine is None:
            metrics.spot_checks.labels("unavailable").inc(len(group))
            for j in group:
                _outcome(j, "unavailable", metrics)
            continue
        if engine.info.vocab_size != info.vocab_size:  # cannot be the teacher's student
            for j in group:
                j.fail(
                    Cause.WRONG_MODEL,
                    f"committed model has vocabulary {engine.info.vocab_size}"
                    f", the teacher {info.vocab_size}",
                )
                _outcome(j, "failed", metrics)
            metrics.spot_checks.labels("failed").inc(len(group))
            continue
        try:
            recomputed = await engine.score(
                [prompts[j.task] for j in group], [j.answer.token_ids.tolist() for j in group], k
            )
        except Exception as e:  # the validator's engine failed: not the miner's fault
            log.warning("spot check with %s failed: %s", digest[:12], e)
            for j in group:
                j.fail(Cause.VALIDATOR_ERROR, f"spot-check engine: {e}")
                _outcome(j, "error", metrics)
            continue
        for j, r in zip(group, recomputed, strict=True):
            try:
                judge.verify_against_committed(
                    j,
                    r,
                    vocab_size=info.vocab_size,
                    eos_token_ids=info.eos_token_ids,
                    max_tokens=cfg.validator.max_tokens,
                    cfg=cfg.verify,
                )
            except ValueError as e:  # our own recomputation is unusable: one answer, not the step
                log.exception("spot check of %s with %s failed", j.answer.who, digest[:12])
                j.fail(Cause.VALIDATOR_ERROR, f"spot check: {e}")
            j.provenance["committed"] = r.provenance.to_dict()
            metrics.spot_checks.labels("ok" if j.ok else "failed").inc()
            if j.cause is Cause.VALIDATOR_ERROR:
                _outcome(j, "error", metrics)
            else:
                _outcome(j, "passed" if j.ok else "failed", metrics)
