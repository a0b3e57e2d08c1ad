"""Committed models for spot checks: found by identity, digest-verified, kept in a small LRU.

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
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from distill.identity import IdentityError, model_digest
from subnet.engine import Engine

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
