"""An exclusive, self-releasing lock file that names the process holding it.

``fcntl.flock`` on a file kept open for the life of the process: the kernel releases it when
the process dies, ``kill -9`` included, so a stale file never blocks a restart; the pid written
inside is only there to tell the operator who holds it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from subnet.errors import ConfigError, StateError


class PidLock:
    """Hold ``path`` exclusively until :meth:`release` (or process exit).

    ``what`` names the thing guarded in the error, e.g. ``"hotkey 5F.. on this machine"``.
    """

    def __init__(self, path: str | Path, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self._fh: IO[str] | None = None

    def acquire(self) -> PidLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = self.path.open("a+")
        except OSError as e:
            raise StateError(f"cannot open lock file {self.path}: {e.strerror or e}") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise ConfigError(
                f"another process (pid {holder}) already runs {self.what} "
                f"(lock {self.path}); stop it first"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> PidLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
