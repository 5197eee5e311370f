"""Opening run.db, and what SQLite's errors mean to a user.

The driver opens it read-write (WAL). Every other command opens it read-only: it never
writes a byte of a run and creates no file in it, and it works on a read-only directory.
While a driver writes the run (or one was killed), ``run.db-wal`` exists and a read-only
connection (``mode=ro``) reads through it. Without it, everything is in run.db itself and
it is opened as immutable: SQLite's read-only WAL would otherwise leave empty ``-wal`` and
``-shm`` files behind, and cannot open at all in a read-only directory. (A driver that
started during such a read would have to fill and checkpoint a thousand WAL pages before
the read ends to change what it sees.)

Errors are told apart by SQLite's own codes, not guessed: a file that is not a
database or a damaged one is "damaged"; one that cannot be opened (permissions, a
read-only directory) says so; a full disk is :class:`DiskFull`.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from evo.storage._records import StoreError

# SQLite's primary result codes (https://sqlite.org/rescode.html)
_PERM, _READONLY, _CORRUPT, _FULL, _CANTOPEN, _AUTH, _NOTADB = 3, 8, 11, 13, 14, 23, 26
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
EXPLAINED = (_PERM, _READONLY, _CORRUPT, _FULL, _CANTOPEN, _AUTH, _NOTADB)  # codes with a message of their own


class DiskFull(RuntimeError):
    """A write to the run directory failed for lack of space. Everything committed before
    it is kept; the message says where the write failed."""


def code(exc: BaseException) -> int | None:
    """SQLite's primary result code of ``exc`` (None for an error that is not SQLite's)."""
    found = getattr(exc, "sqlite_errorcode", None)
    return found & 0xFF if isinstance(found, int) else None


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in _NO_SPACE
    return code(exc) == _FULL


def connect(path: Path, *, read_only: bool, timeout: float = 30.0) -> sqlite3.Connection:
    """A connection to ``path`` (opened now, so that a file it cannot open raises here).

    Read-only: ``mode=ro`` beside a WAL file, else (or where the WAL index cannot be
    made) ``immutable=1``. An error is a one-line StoreError naming the run directory."""
    if not read_only:
        db = sqlite3.connect(path, isolation_level=None, timeout=timeout)
    else:
        uri = path.absolute().as_uri()
        live = path.with_name(path.name + "-wal").exists()
        mode = "mode=ro" if live else "mode=ro&immutable=1"
        db = sqlite3.connect(f"{uri}?{mode}", uri=True, isolation_level=None, timeout=timeout)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            db.close()
            if code(exc) != _CANTOPEN or not os.access(path, os.R_OK):
                raise explain(exc, path) from None
            db = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None, timeout=timeout)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        db.close()
        raise explain(exc, path) from None
    db.row_factory = sqlite3.Row
    return db


def explain(exc: BaseException, path: Path) -> Exception:
    """``exc``, raised while using the run.db at ``path``, as the one line a user reads."""
    run_dir, found = path.parent, code(exc)
    if is_disk_full(exc):
        return DiskFull(f"{path}: the disk is full ({exc})")
    if found in (_CANTOPEN, _PERM, _AUTH) or isinstance(exc, PermissionError):
        return StoreError(f"{run_dir}: cannot open run.db ({exc}); check its permissions")
    if found == _READONLY:
        return StoreError(f"{run_dir}: run.db is read-only here; this command writes the run")
    if found in (_CORRUPT, _NOTADB):
        return StoreError(f"{run_dir}: run.db is not a run database (damaged, or not written by evo): {exc}")
    return StoreError(f"{run_dir}: run.db: {exc}")
