"""The validator's model fetcher: committed models into the disk cache, in the background.

A step never waits for a download: it asks :meth:`ModelFetcher.want` (non-blocking) for each
miner's committed model and gets the model's current :class:`ModelStatus`; a model not in the
cache is fetched by a background task, at most ``concurrency`` at once. A fetch plans the files
with the model's source (``sources.py``), makes room for them in the cache (``diskcache.py``),
downloads them (resuming a broken transfer), then recomputes the digest of the whole folder off
the event loop. Only a folder whose digest is the committed one enters the cache, so every
model the spot checks load was checked first. A failure is kept with its reason and retried
with exponential backoff; the grace rule (``availability.py``) decides what it costs the miner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from distill.identity import IdentityError
from distill.manifest import model_manifest
from neurons.validator.diskcache import CacheFull, DiskCache
from neurons.validator.sources import FetchError, FetchTarget, Source
from subnet.chain.retry import Backoff

log = logging.getLogger("subnet.validator.fetch")
RETRY = Backoff(base=15.0, cap=900.0)


class FetchState(StrEnum):
    PENDING = "pending"  # not in the cache yet: queued or downloading
    READY = "ready"  # in the cache, digest verified
    FAILED = "failed"  # the last attempt failed (retried after a backoff)


@dataclass(frozen=True)
class ModelStatus:
    state: FetchState
    reason: str = ""  # why not ready: a FetchError reason, "too_large", "load_failed", ...
    detail: str = ""  # one line for logs and the answer's cause detail
    path: Path | None = None
    tokenizer_digest: str | None = None
    source: str = ""  # "miner" | "hf"
    attempts: int = 0

    @property
    def ready(self) -> bool:
        return self.state is FetchState.READY


class ModelFetcher:
    """See the module docstring. ``protect`` names digests eviction must spare (the models the
    spot checks hold loaded); ``clock`` is injectable for the retry schedule."""

    def __init__(
        self,
        cache: DiskCache,
        sources: Mapping[str, Source],
        *,
        concurrency: int = 2,
        retry: Backoff = RETRY,
        clock: Callable[[], float] = time.monotonic,
        protect: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.cache = cache
        self.sources = dict(sources)
        self.retry = retry
        self.clock = clock
        self.protect = protect
        self._sem = asyncio.Semaphore(concurrency)
        self._status: dict[str, ModelStatus] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._next_try: dict[str, float] = {}
        self._failures: dict[str, int] = {}

    # -- what the step asks ------------------------------------------------------------------

    def status(self, digest: str) -> ModelStatus:
        entry = self.cache.get(digest)
        if entry is not None and digest not in self._next_try:
            return ModelStatus(
                FetchState.READY,
                path=self.cache.path(digest),
                tokenizer_digest=entry.tokenizer_digest or None,
                source=entry.source,
            )
        return self._status.get(digest, ModelStatus(FetchState.PENDING, "queued"))

    def want(self, target: FetchTarget) -> ModelStatus:
        """The model's status now; starts a background fetch when it is not in the cache, no
        fetch is running and no failure's backoff is still pending. Never blocks."""
        digest = target.digest
        now = self.clock()
        if digest in self._next_try and now < self._next_try[digest]:
            return self._status[digest]
        if self.cache.get(digest) is not None:
            self._next_try.pop(digest, None)
            return self.status(digest)
        if digest not in self._tasks:
            kind = target.source.kind
            if kind not in self.sources:
                return self._fail(digest, "no_source", f"no {kind} source configured", kind)
            self._status[digest] = ModelStatus(
                FetchState.PENDING,
                self._status.get(digest, ModelStatus(FetchState.PENDING)).reason or "queued",
                self._status.get(digest, ModelStatus(FetchState.PENDING)).detail,
                source=kind,
                attempts=self._failures.get(digest, 0),
            )
            task = asyncio.create_task(self._fetch(target), name=f"fetch {digest[:12]}")
            self._tasks[digest] = task
            task.add_done_callback(lambda _: self._tasks.pop(digest, None))
        return self._status[digest]

    def touch(self, digest: str) -> None:
        self.cache.touch(digest)

    def mark_failed(self, digest: str, reason: str, detail: str) -> None:
        """A model the cache holds that could not be used (loading it failed)."""
        self._fail(digest, reason, detail, self.status(digest).source)

    async def wait(self, digests: Iterable[str], timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until no fetch of ``digests`` is running; True if none
        is left. The validator calls it once before its first step, never inside one."""
        tasks = [t for d, t in list(self._tasks.items()) if d in set(digests)]
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        return not pending

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    # -- the background work -----------------------------------------------------------------

    def _fail(self, digest: str, reason: str, detail: str, source: str) -> ModelStatus:
        n = self._failures.get(digest, 0) + 1
        self._failures[digest] = n
        self._next_try[digest] = self.clock() + self.retry.delay(n)
        status = ModelStatus(FetchState.FAILED, reason, detail[:300], source=source, attempts=n)
        self._status[digest] = status
        return status

    async def _fetch(self, target: FetchTarget) -> None:
        digest, kind = target.digest, target.source.kind
        source = self.sources[kind]
        async with self._sem:
            try:
                files = await source.plan(target)
                self.cache.reserve(digest, sum(f.size for f in files), self.protect())
                await source.download(target, files, self.cache.partial_dir(digest))
                manifest = await asyncio.to_thread(model_manifest, self.cache.partial_dir(digest))
                if manifest.digest != digest:
                    self.cache.release(digest, discard=True)
                    raise FetchError(
                        "digest_mismatch",
                        f"the files hash to {manifest.digest[:12]}, the commitment says "
                        f"{digest[:12]}",
                    )
                path = self.cache.commit(digest, kind, manifest.tokenizer_digest)
            except FetchError as e:
                self.cache.release(digest)
                status = self._fail(digest, e.reason, e.message, kind)
                log.warning(
                    "model %s (%s, uid %s) not fetched: %s (attempt %d)",
                    digest[:12],
                    kind,
                    target.uid,
                    e.message,
                    status.attempts,
                )
                return
            except CacheFull as e:
                self.cache.release(digest, discard=True)
                self._fail(digest, "too_large", str(e), kind)
                log.warning("model %s (uid %s) does not fit: %s", digest[:12], target.uid, e)
                return
            except IdentityError as e:  # the files are not a model folder
                self.cache.release(digest, discard=True)
                self._fail(digest, "bad_model", str(e), kind)
                log.warning("model %s (uid %s) unusable: %s", digest[:12], target.uid, e)
                return
            except OSError as e:  # our disk: keep the partial files, try again later
                self.cache.release(digest)
                self._fail(digest, "disk", f"{type(e).__name__}: {e}", kind)
                log.error("model %s: disk error while fetching: %s", digest[:12], e)
                return
            except Exception as e:  # a bug: keep its traceback, never kill the validator
                self.cache.release(digest)
                self._fail(digest, "error", f"{type(e).__name__}: {e}", kind)
                log.exception("model %s: fetch failed", digest[:12])
                return
        self._failures.pop(digest, None)
        self._next_try.pop(digest, None)
        self._status[digest] = replace(
            ModelStatus(FetchState.READY, path=path, tokenizer_digest=manifest.tokenizer_digest),
            source=kind,
        )
        log.info("model %s fetched from %s (uid %s) and verified", digest[:12], kind, target.uid)
