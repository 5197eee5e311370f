"""The connection under a run store: opening run.db, transactions, the driver's lock, and
every SQLite error turned into one line (``_sqlite``). ``RunStore`` adds what a run holds."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import yaml

from evo.storage._lock import RunDirLock
from evo.storage._records import IndividualRecord, StoreError, TrialRecord, individual_from_row, trial_from_row
from evo.storage._sqlite import EXPLAINED, DiskFull, code, connect, explain, is_disk_full


class Database:
    """One run's SQLite connection: read-write (WAL) for its driver, read-only for the rest."""

    def __init__(self, run_dir: Path | str | None, *, read_only: bool = False):
        self.run_dir = None if run_dir is None or str(run_dir) == ":memory:" else Path(run_dir)
        self.read_only = read_only
        if self.run_dir is None:
            self._db = sqlite3.connect(":memory:", isolation_level=None)
            self._db.row_factory = sqlite3.Row
        else:
            self._db = connect(self.run_dir / "run.db", read_only=read_only)
        if self.run_dir and not read_only:
            self._db.execute("PRAGMA journal_mode=WAL")
            # Every commit reaches the WAL file before it returns, so a killed driver loses nothing
            # committed. NORMAL skips the fsync of each commit (FULL cost ~2 ms each, which was most
            # of the engine's time per evaluation): only a power cut or an OS crash can lose the last
            # commits, and the store stays consistent; resume trains those trials again.
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._lock = RunDirLock(self.run_dir) if self.run_dir and not read_only else None

    def lock(self) -> None:
        """Take the directory for this driver (RunDirInUse if another holds it)."""
        if self._lock is not None:
            self._lock.acquire()

    def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One committed transaction; a full disk is DiskFull saying what run.db keeps."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:  # SQLite has rolled back already after some errors
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            if is_disk_full(exc):
                raise self.disk_full(f"writing {self._where} ({exc})") from None
            if code(exc) in EXPLAINED:
                raise explain(exc, Path(self._where)) from None
            raise

    def disk_full(self, what: str) -> DiskFull:
        """The one line for a full disk: where the write failed and what run.db keeps."""
        try:
            kept = self._db.execute("SELECT count(*) FROM trials WHERE status != 'running'").fetchone()[0]
        except sqlite3.Error:
            return DiskFull(f"the disk is full: {what}; nothing was recorded")
        return DiskFull(
            f"the disk is full: {what}; run.db keeps the {kept} trials finished before it, "
            "and trials in flight are trained again on resume"
        )

    @property
    def _where(self) -> str:
        return str(self.run_dir / "run.db") if self.run_dir is not None else "the in-memory run"

    def _query(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """A read; a damaged database is one StoreError line naming it."""
        try:
            return self._db.execute(sql, params)
        except sqlite3.DatabaseError as exc:
            raise explain(exc, Path(self._where)) from None

    def _trial(self, row: sqlite3.Row | None) -> TrialRecord:
        try:
            return trial_from_row(row)  # type: ignore[arg-type]  # None: damaged_row names it
        except StoreError as exc:
            raise StoreError(f"{self.run_dir or 'memory'}: {exc}") from None

    def _individual(self, row: sqlite3.Row) -> IndividualRecord:
        try:
            return individual_from_row(row)
        except StoreError as exc:
            raise StoreError(f"{self.run_dir or 'memory'}: {exc}") from None

    def meta(self, key: str, default: Any = None) -> Any:
        row = self._query("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            return default
        try:
            return json.loads(row["value"])
        except (TypeError, ValueError):
            raise StoreError(f"{self.run_dir}: run.db is damaged: table meta, key {key}: not JSON") from None

    def write_config_file(self, config: Mapping[str, Any]) -> None:
        """RUN_DIR/config.yaml, for people: written aside and renamed, so never half written."""
        if self.run_dir is None:
            return
        staging = self.run_dir / "config.yaml.tmp"
        try:
            staging.write_text(yaml.safe_dump(dict(config), sort_keys=False))
            staging.replace(self.run_dir / "config.yaml")
        except OSError as exc:
            staging.unlink(missing_ok=True)
            if is_disk_full(exc):
                raise self.disk_full(f"writing {self.run_dir / 'config.yaml'}") from None
            raise


def in_memory_copy(db: sqlite3.Connection) -> sqlite3.Connection:
    """A copy of ``db`` in memory (to migrate an older run without writing its file)."""
    memory = sqlite3.connect(":memory:", isolation_level=None)
    db.backup(memory)
    db.close()
    memory.row_factory = sqlite3.Row
    return memory
