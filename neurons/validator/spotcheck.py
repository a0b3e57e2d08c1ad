"""Spot checks: recompute a miner's claims with the model it committed, kept in a small LRU.

A miner commits ``v1:<digest>:<name>:<revision>``; the validator finds a folder under its
model roots whose files hash to that digest (the name is only a hint for where to look first),
loads it on the configured engine and keeps at most ``capacity`` loaded, closing the least
recently used. Digests are cached per (path, mtime, size) so a root is hashed once, not every
step. A digest nobody here has is ``None``: the answer is then not spot-checked (it is not the
miner's fault that this validator lacks the files), and the caller counts it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from distill.identity import IdentityError, model_digest
from neurons.validator import judge
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

    def __init__(self, roots: Sequence[str | Path], capacity: int, loader: Loader) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.roots = [Path(r).expanduser() for r in roots if str(r)]
        self.capacity = capacity
        self._loader = loader
        self._loaded: OrderedDict[str, Engine] = OrderedDict()
        self._pinned: dict[str, Engine] = {}
        self._digests: dict[Path, tuple[tuple[float, int], str | None]] = {}
        self._lock = asyncio.Lock()
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

    async def get(self, digest: str, name_hint: str = "") -> Engine | None:
        """The loaded model with this digest, or None if no root holds it."""
        if digest in self._pinned:
            return self._pinned[digest]
        async with self._lock:
            engine = self._loaded.get(digest)
            if engine is not None:
                self._loaded.move_to_end(digest)
                return engine
            path = await self.locate(digest, name_hint)
            if path is None:
                return None
            while len(self._loaded) >= self.capacity:
                old_digest, old = self._loaded.popitem(last=False)
                log.info("evicting committed model %s", old_digest[:12])
                await old.close()
            engine = await self._loader(path)
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


async def spot_check(
    work: Sequence[Judged],
    models: ModelCache,
    teacher: EngineInfo,
    prompts: Sequence[Sequence[int]],
    seed: str,
    k: int,
    cfg: SubnetConfig,
    metrics: ValidatorMetrics,
) -> None:
    """Recompute the picked answers' claims with each miner's committed model (one batched
    ``score`` per model) and judge them; a failure of our own engine is ``VALIDATOR_ERROR``."""
    info = teacher
    groups: dict[str, list[Judged]] = defaultdict(list)
    for j in work:
        if (
            j.ok
            and j.digest
            and judge.spot_check_picked(
                seed, j.answer.who, j.answer.task_id, cfg.verify.spot_check_fraction
            )
        ):
            j.spot_check = True
            groups[j.digest].append(j)
    for digest, group in groups.items():
        engine = await models.get(digest, group[0].name_hint)
        if engine is None:
            metrics.spot_checks.labels("unavailable").inc(len(group))
            continue
        if engine.info.vocab_size != info.vocab_size:  # cannot be the teacher's student
            for j in group:
                j.fail(
                    Cause.WRONG_MODEL,
                    f"committed model has vocabulary {engine.info.vocab_size}"
                    f", the teacher {info.vocab_size}",
                )
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
