"""One process per state directory: an exclusive ``fcntl`` lock held for the process's life.

Two validators on one state directory would both commit steps to one database and both set
weights from it; the second one used to run until it died on a step the first had already
committed. :class:`StateLock` takes ``DIR/LOCK_NAME`` with ``flock(LOCK_EX | LOCK_NB)`` and
writes its pid there; a second process gets a one-line :class:`~subnet.errors.StateError`
naming the holder's pid. The kernel drops the lock when the holder's file descriptor closes, so
a killed holder (``kill -9`` included) never leaves a stale lock behind: the file may stay, the
lock does not. Not for NFS, where ``flock`` does not lock across machines.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

from subnet.errors import StateError

LOCK_NAME = "lock"


class StateLock:
    """An exclusive lock on a state directory; use as a context manager (or acquire/release)."""

    def __init__(self, folder: str | Path, *, what: str = "process") -> None:
        self.folder = Path(folder).expanduser()
        self.path = self.folder / LOCK_NAME
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> StateLock:
        """Take the lock or raise StateError naming the holder; idempotent in one process."""
        if self._fd is not None:
            return self
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StateError(f"cannot create the lock file {self.path}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_pid(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateError(f"cannot lock {self.path}: {e.strerror}") from e
            who = f"pid {holder}" if holder else "pid not written yet"
            raise StateError(
                f"state directory {self.folder} is in use by another {self.what} ({who}); "
                "stop it first or use another state directory"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases it); the file stays."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> StateLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    """The pid the holder wrote (None while it has not written it yet, or for garbage)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
