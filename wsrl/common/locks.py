"""One process at a time: an exclusive lock on a file, for a run directory or a Minari store being written.

The lock is an ``flock`` on the file, which names its holder's PID while held and goes away with the hold. The
kernel drops the lock when its holder dies, so a killed process leaves no stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable
from pathlib import Path


class PidLock:
    """An exclusive lock on ``path``: ``acquire`` it, ``release`` it (the file is removed while still held, so no
    one can take the old file after us)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self, busy: Callable[[str], None]) -> None:
        """Take the lock. Where another process holds it, ``busy(its PID)`` is called first: it raises to give up,
        or returns to wait until the holder lets go. Raises OSError where the file cannot be opened or written."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    busy(os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown")
                    fcntl.flock(fd, fcntl.LOCK_EX)
                if self._still_there(fd):  # the holder may have removed the file before we locked it
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())
                    self.fd = fd
                    return
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def _still_there(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = None
