"""One writer per session folder, across processes: an exclusive flock on the folder itself.

Several processes may write into one data folder (the ingest workers of `recorder serve
--workers N`, or by mistake two servers started on it). A session folder is written by one of
them at a time: whoever opens a session's writer, or recovers it, holds the folder's lock until
it lets go. The kernel drops a flock when its holder dies, so a crashed process never leaves a
session locked: the next opener finds the lock free and recovers what the crash left.

The lock is taken on the folder's own descriptor, so the session's layout gains no file.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path


class SessionBusy(Exception):
    """The session is being written by another process (it holds the folder's lock)."""

    def __init__(self, path: Path):
        super().__init__(f"the session {path.parent.name}/{path.name} is being written by another process")
        self.path = path


class SessionLock:
    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path) -> SessionLock:
        """The folder's lock, at once, or SessionBusy if another process holds it. The folder
        must exist."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise SessionBusy(Path(path)) from None
            raise
        return cls(Path(path), fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor of the lock drops it

    def __enter__(self) -> SessionLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
