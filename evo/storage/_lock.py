"""One driver per run directory, enforced with flock on RUN_DIR/.lock.

The kernel drops an flock when its process dies, however it dies, so the directory of
a killed driver is free again at once; no stale-lock cleanup is ever needed.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class RunDirInUse(RuntimeError):
    """Another live driver holds the run directory."""


class RunDirLock:
    """The lock of one run directory; ``acquire`` is idempotent."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the directory, or raise RunDirInUse naming the holder's pid."""
        if self._fd is not None:
            return
        fd = os.open(self.run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirInUse(f"{self.run_dir}: another evo driver (pid {holder}) is running this directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
