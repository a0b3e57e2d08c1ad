"""The validator's disk cache of committed models: bounded in bytes, least recently used out.

Layout under ``root``::

    index.json           digest -> {bytes, last_used, source, tokenizer_digest} (atomic writes)
    models/<digest>/     a verified model folder (its digest was checked before it got here)
    partial/<digest>/    a download in progress, kept across restarts so it resumes

Only :meth:`commit` puts a folder under ``models/``, and only after the fetcher checked its
digest, so anything listed in the index is safe to load. Reopened after a restart, the index
is reconciled with the disk: entries whose folder is gone are dropped, folders the index does
not know (a crash between the move and the index write) are deleted, and partial downloads
count toward the byte bound.

``max_bytes`` bounds everything under ``root``: before a download starts, :meth:`reserve`
evicts least recently used models (never a ``protect``-ed one) until the new model fits, or
refuses it when it alone is larger than the cache.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from subnet.errors import StateError

log = logging.getLogger("subnet.validator.diskcache")
INDEX_VERSION = 1


class CacheFull(Exception):
    """A model larger than the whole cache (or larger than what can be evicted)."""


@dataclass(frozen=True)
class CacheEntry:
    digest: str
    bytes: int
    last_used: float
    source: str = ""
    tokenizer_digest: str = ""


def folder_bytes(path: Path) -> int:
    """Bytes of every regular file under ``path`` (0 if it does not exist)."""
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


class DiskCache:
    """See the module docstring. Used from one event loop; the calls are quick (renames,
    small JSON writes); the digest checks that take time happen in the fetcher, off-loop."""

    def __init__(
        self, root: str | Path, max_bytes: int, *, clock: Callable[[], float] = time.time
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.root = Path(root).expanduser()
        self.max_bytes = max_bytes
        self.clock = clock
        self._entries: dict[str, CacheEntry] = {}
        self._reserved: dict[str, int] = {}  # digest -> bytes of a download in flight
        try:
            (self.root / "models").mkdir(parents=True, exist_ok=True)
            (self.root / "partial").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StateError(f"cannot create the model cache {self.root}: {e.strerror}") from e
        self._load()

    # -- index -------------------------------------------------------------------------------

    @property
    def index_path(self) -> Path:
        return self.root / "index.json"

    def _load(self) -> None:
        entries: dict[str, CacheEntry] = {}
        if self.index_path.is_file():
            try:
                data = json.loads(self.index_path.read_text())
                for digest, e in dict(data.get("models", {})).items():
                    entries[str(digest)] = CacheEntry(
                        str(digest),
                        int(e["bytes"]),
                        float(e["last_used"]),
                        str(e.get("source", "")),
                        str(e.get("tokenizer_digest", "")),
                    )
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                log.warning(
                    "model cache index %s unreadable (%s): starting empty", self.index_path, e
                )
                entries = {}
        models = self.root / "models"
        on_disk = {p.name for p in models.iterdir() if p.is_dir()}
        self._entries = {d: e for d, e in entries.items() if d in on_disk}
        for stray in on_disk - set(self._entries):
            log.info("model cache: removing %s, which the index does not know", stray[:12])
            shutil.rmtree(models / stray, ignore_errors=True)
        if set(entries) != set(self._entries) or not self.index_path.is_file():
            self._save()

    def _save(self) -> None:
        data = {
            "version": INDEX_VERSION,
            "models": {
                d: {k: v for k, v in asdict(e).items() if k != "digest"}
                for d, e in self._entries.items()
            },
        }
        tmp = self.index_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, self.index_path)
        except OSError as e:
            raise StateError(f"cannot write the model cache index: {e.strerror}") from e

    # -- reading -----------------------------------------------------------------------------

    def entries(self) -> list[CacheEntry]:
        return sorted(self._entries.values(), key=lambda e: e.last_used)

    def get(self, digest: str) -> CacheEntry | None:
        return self._entries.get(digest)

    def path(self, digest: str) -> Path | None:
        """The verified folder of ``digest``, or None."""
        return self.root / "models" / digest if digest in self._entries else None

    def touch(self, digest: str) -> None:
        """Mark ``digest`` used now (it moves to the back of the eviction order)."""
        e = self._entries.get(digest)
        if e is not None:
            self._entries[digest] = CacheEntry(
                e.digest, e.bytes, self.clock(), e.source, e.tokenizer_digest
            )
            self._save()

    def partial_dir(self, digest: str) -> Path:
        return self.root / "partial" / digest

    @property
    def used_bytes(self) -> int:
        """Verified models plus partial downloads (those in flight at their reserved size)."""
        partial = 0
        for p in (self.root / "partial").iterdir():
            partial += max(self._reserved.get(p.name, 0), folder_bytes(p))
        in_flight = sum(b for d, b in self._reserved.items() if not self.partial_dir(d).exists())
        return sum(e.bytes for e in self._entries.values()) + partial + in_flight

    # -- writing -----------------------------------------------------------------------------

    def reserve(self, digest: str, nbytes: int, protect: Iterable[str] = ()) -> list[str]:
        """Make room for a ``nbytes`` download of ``digest``; returns the digests evicted.

        Stale partial downloads (not reserved) go first, then verified models, least recently
        used first, never one in ``protect``. CacheFull when it cannot fit.
        """
        if nbytes > self.max_bytes:
            raise CacheFull(f"model is {nbytes} bytes, the cache holds {self.max_bytes}")
        self._reserved[digest] = max(nbytes, folder_bytes(self.partial_dir(digest)))
        keep = {*protect, digest}
        for p in list((self.root / "partial").iterdir()):
            if self.used_bytes <= self.max_bytes:
                break
            if p.name not in self._reserved and p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)
        evicted: list[str] = []
        for e in self.entries():
            if self.used_bytes <= self.max_bytes:
                break
            if e.digest not in keep:
                self.evict(e.digest)
                evicted.append(e.digest)
        if self.used_bytes > self.max_bytes:
            self._reserved.pop(digest, None)
            raise CacheFull(
                f"model is {nbytes} bytes and only {self.max_bytes - self.used_bytes + nbytes} "
                "can be freed (the rest is in use)"
            )
        return evicted

    def release(self, digest: str, *, discard: bool = False) -> None:
        """Drop a reservation (the download ended); ``discard`` deletes its partial files."""
        self._reserved.pop(digest, None)
        if discard:
            shutil.rmtree(self.partial_dir(digest), ignore_errors=True)

    def commit(self, digest: str, source: str, tokenizer_digest: str) -> Path:
        """Move the verified partial folder of ``digest`` into the cache and index it."""
        src, dest = self.partial_dir(digest), self.root / "models" / digest
        shutil.rmtree(dest, ignore_errors=True)
        try:
            os.replace(src, dest)
        except OSError as e:
            raise StateError(f"cannot move {digest[:12]} into the model cache: {e.strerror}") from e
        self._reserved.pop(digest, None)
        self._entries[digest] = CacheEntry(
            digest, folder_bytes(dest), self.clock(), source, tokenizer_digest
        )
        self._save()
        return dest

    def evict(self, digest: str) -> None:
        if self._entries.pop(digest, None) is not None:
            log.info("model cache: evicting %s (least recently used)", digest[:12])
            self._save()
        shutil.rmtree(self.root / "models" / digest, ignore_errors=True)
