"""Build-once directories in the user cache, shared by processes, tests and CI runs.

A cached artefact lives at a path named by the content hash of its recipe. It is built into a
temporary sibling and renamed into place, under an exclusive file lock, so a reader never sees
a half-built directory and two processes never build the same thing twice. A directory that
exists is complete (rename is atomic on one filesystem).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

#: Overrides the cache location; tests that isolate HOME set it to keep reusing one cache.
CACHE_ENV = "SUBNET_CACHE"


def cache_root() -> Path:
    """``$SUBNET_CACHE`` if set, else the platform user cache dir (``~/.cache/distill-subnet``)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs  # declared dependency; imported here to keep import time low

    return Path(platformdirs.user_cache_dir("distill-subnet"))


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (created if missing), released on exit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextlib.asynccontextmanager
async def async_file_lock(path: Path, poll: float = 0.5) -> AsyncIterator[None]:
    """:func:`file_lock` for async callers: waits by polling, so the event loop keeps running
    and a cancelled waiter leaves nothing blocked behind it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(poll)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _building(final: Path) -> Iterator[Path]:
    """An empty temporary sibling of ``final``: renamed into place if the block succeeds,
    removed if it fails (nothing half-built ever stays). Call with the lock held."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared by CI users
        if final.exists():
            old = final.with_name(f".{final.name}.old.{os.getpid()}")
            final.rename(old)
            shutil.rmtree(old)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _lock_path(final: Path) -> Path:
    return final.with_name(final.name + ".lock")


def ensure_dir(final: Path, build: Callable[[Path], object], force: bool = False) -> bool:
    """Make ``final`` exist by calling ``build(tmp_dir)`` once; True if this call built it.

    ``build`` fills an empty temporary directory next to ``final``; on success it is renamed
    to ``final``, on failure it is removed and the error propagates (nothing half-built stays).
    ``force`` rebuilds even if ``final`` exists (the old copy is replaced only after success).
    """
    if final.is_dir() and not force:
        return False
    with file_lock(_lock_path(final)):
        if final.is_dir() and not force:
            return False  # another process built it while we waited
        with _building(final) as tmp:
            build(tmp)
    return True


async def ensure_dir_async(
    final: Path, build: Callable[[Path], Awaitable[object]], force: bool = False
) -> bool:
    """:func:`ensure_dir` for a builder that is a coroutine (it runs engines)."""
    if final.is_dir() and not force:
        return False
    async with async_file_lock(_lock_path(final)):
        if final.is_dir() and not force:
            return False
        with _building(final) as tmp:
            await build(tmp)
    return True
