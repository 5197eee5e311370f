"""One driver per run directory, enforced with flock on the run directory itself.

The lock is the directory's own inode, not a file in it: deleting, replacing or
truncating any file of the run (``.lock`` included) cannot let a second driver in, and
moving the directory keeps it locked. The kernel drops an flock when its process dies,
however it dies, so the directory of a killed driver is free again at once; no stale-lock
cleanup is ever needed. ``RUN_DIR/.lock`` only tells the holder's pid, for the message a
second driver gets.

Where the file system cannot flock a directory (NFS emulates flock with POSIX locks,
which need a file open for writing), the lock falls back to flock on ``RUN_DIR/.lock``,
which a deleted ``.lock`` can defeat; keep run directories on a local disk.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

PID_FILE = ".lock"
_NO_DIRECTORY_LOCKS = (errno.EBADF, errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP)


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

    def acquire(self, *, driver: bool = True) -> None:
        """Take the directory, or raise RunDirInUse naming the holder's pid. ``driver=False``:
        a command that only keeps drivers out while it reads (export-optuna, the dashboard's
        catch-up) and writes no pid into the run."""
        if self._fd is not None:
            return
        fd = os.open(self.run_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._flock(fd)
        except OSError as exc:  # not RunDirInUse: the file system cannot flock a directory
            if exc.errno not in _NO_DIRECTORY_LOCKS:
                raise
            fd = os.open(self.run_dir / PID_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            self._flock(fd)
        self._fd = fd
        if driver:
            self._write_pid()

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _flock(self, fd: int) -> None:
        """flock ``fd`` for this driver, or close it and raise RunDirInUse (or the OSError)."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirInUse(
                f"{self.run_dir}: another evo driver (pid {self._holder()}) is running this directory"
            ) from None
        except OSError:
            os.close(fd)
            raise

    def _write_pid(self) -> None:
        """Best effort: the pid is only for messages (a read-only directory keeps none)."""
        try:
            (self.run_dir / PID_FILE).write_text(str(os.getpid()))
        except OSError:
            pass

    def _holder(self) -> str:
        try:
            return (self.run_dir / PID_FILE).read_text(errors="replace").strip()[:16] or "unknown"
        except OSError:
            return "unknown"
