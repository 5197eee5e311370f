"""The run store: one SQLite database per run directory, committed per evaluation.

Layout of a run directory::

    RUN_DIR/config.yaml   the resolved run config
    RUN_DIR/run.db        this store
    RUN_DIR/.lock         held (flock) by the one driver writing the directory
    RUN_DIR/best/         artifacts (adapter) of the best trial so far

Genomes are stored as versioned JSON (``{"v": 1, "genes": {...}}``), never pickles,
so any later version of the tool, or any other program, can read a run.
"""
from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import yaml

from evo.trial import FailureReason, TrialResult, TrialStatus

SCHEMA_VERSION = 2  # 2: trials.fidelity and trials.resumed_from
GENOME_FORMAT = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    config_key TEXT NOT NULL,
    config TEXT NOT NULL,
    generation INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    message TEXT NOT NULL DEFAULT '',
    objective_values TEXT NOT NULL DEFAULT '{}',
    metrics TEXT NOT NULL DEFAULT '{}',
    applied_config TEXT,
    started_at REAL NOT NULL,
    finished_at REAL,
    duration REAL,
    fidelity REAL NOT NULL DEFAULT 1.0,
    resumed_from INTEGER
);
CREATE INDEX IF NOT EXISTS trials_by_config ON trials (fingerprint, config_key);
CREATE TABLE IF NOT EXISTS individuals (
    id INTEGER PRIMARY KEY,
    generation INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    genome TEXT NOT NULL,
    origin TEXT NOT NULL,
    parents TEXT NOT NULL DEFAULT '[]',
    trial_id INTEGER REFERENCES trials (id),
    UNIQUE (generation, slot)
);
CREATE TABLE IF NOT EXISTS populations (
    generation INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    individual_id INTEGER NOT NULL REFERENCES individuals (id),
    PRIMARY KEY (generation, rank)
);
CREATE TABLE IF NOT EXISTS generations (
    generation INTEGER PRIMARY KEY,
    seed_entropy TEXT NOT NULL,
    finished_at REAL NOT NULL,
    stats TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL
);
"""

# Besides complete trials, the failures that belong to the genome itself are reused;
# an OOM, a timeout or a crash may not happen again, so those genomes are evaluated anew.
CACHEABLE_FAILURES = (FailureReason.DIVERGED.value,)


class RunDirInUse(RuntimeError):
    """Another live driver holds the run directory."""


class StoreError(RuntimeError):
    """The run directory is missing, not a run, or from an unknown schema."""


@dataclass(frozen=True)
class TrialRecord:
    id: int
    config: dict[str, Any]
    generation: int
    seed: int
    status: TrialStatus
    reason: FailureReason | None
    message: str
    values: dict[str, float]
    metrics: dict[str, Any]
    applied_config: dict[str, Any] | None
    started_at: float
    finished_at: float | None
    duration: float | None
    fidelity: float = 1.0  # fraction of the budget trained up to
    resumed_from: int | None = None  # the trial whose checkpoint this one continued
    fingerprint: str = ""  # the run fingerprint, with "@fidelity" below the whole budget

    @property
    def ok(self) -> bool:
        return self.status is TrialStatus.COMPLETE

    @property
    def full(self) -> bool:
        """Trained on the whole budget, so comparable with every other full trial."""
        return self.fidelity >= 1.0


@dataclass(frozen=True)
class IndividualRecord:
    id: int
    generation: int
    slot: int
    genome: dict[str, Any]
    origin: str
    parents: list[int]
    trial_id: int | None


def encode_genome(genome: Mapping[str, Any]) -> str:
    return json.dumps({"v": GENOME_FORMAT, "genes": dict(genome)}, sort_keys=True)


def decode_genome(text: str) -> dict[str, Any]:
    data = json.loads(text)
    if data.get("v") != GENOME_FORMAT:
        raise StoreError(f"genome format {data.get('v')!r} is not supported by this version")
    return data["genes"]


def _trial(row: sqlite3.Row) -> TrialRecord:
    return TrialRecord(
        id=row["id"],
        config=json.loads(row["config"]),
        generation=row["generation"],
        seed=row["seed"],
        status=TrialStatus(row["status"]),
        reason=FailureReason(row["reason"]) if row["reason"] else None,
        message=row["message"],
        values=json.loads(row["objective_values"]),
        metrics=json.loads(row["metrics"]),
        applied_config=json.loads(row["applied_config"]) if row["applied_config"] else None,
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        duration=row["duration"],
        fidelity=row["fidelity"],
        resumed_from=row["resumed_from"],
        fingerprint=row["fingerprint"],
    )


def _individual(row: sqlite3.Row) -> IndividualRecord:
    return IndividualRecord(
        id=row["id"],
        generation=row["generation"],
        slot=row["slot"],
        genome=decode_genome(row["genome"]),
        origin=row["origin"],
        parents=json.loads(row["parents"]),
        trial_id=row["trial_id"],
    )


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, allow_nan=True)


class RunStore:
    """Reads and writes one run. Every write is its own committed transaction."""

    def __init__(self, path: Path | str):
        self.run_dir = Path(path) if str(path) != ":memory:" else None
        db = str(self.run_dir / "run.db") if self.run_dir else ":memory:"
        self._db = sqlite3.connect(db, isolation_level=None, timeout=30.0)
        self._db.row_factory = sqlite3.Row
        if self.run_dir:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an evaluation is committed when it returns
        self._db.executescript(_SCHEMA)
        self._lock_fd: int | None = None

    # -- lifecycle --------------------------------------------------------------------
    @classmethod
    def create(cls, run_dir: Path | str, raw_config: Mapping[str, Any], fingerprint: str) -> "RunStore":
        run_dir = Path(run_dir)
        if (run_dir / "run.db").exists():
            raise StoreError(f"{run_dir}: already holds a run; continue it with 'evo resume {run_dir}'")
        run_dir.mkdir(parents=True, exist_ok=True)
        store = cls(run_dir)
        store.lock()
        (run_dir / "config.yaml").write_text(yaml.safe_dump(dict(raw_config), sort_keys=False))
        store.set_meta("schema_version", SCHEMA_VERSION)
        store.set_meta("created_at", time.time())
        store.set_meta("config", dict(raw_config))
        store.set_meta("fingerprint", fingerprint)
        return store

    @classmethod
    def open(cls, run_dir: Path | str) -> "RunStore":
        run_dir = Path(run_dir)
        if not (run_dir / "run.db").is_file():
            raise StoreError(f"{run_dir}: not a run directory (no run.db)")
        store = cls(run_dir)
        version = store.meta("schema_version")
        if version == 1:  # runs of the first release: every trial was a whole fresh training
            with store._transaction() as db:
                db.execute("ALTER TABLE trials ADD COLUMN fidelity REAL NOT NULL DEFAULT 1.0")
                db.execute("ALTER TABLE trials ADD COLUMN resumed_from INTEGER")
                db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (_json(SCHEMA_VERSION),))
            version = SCHEMA_VERSION
        if version != SCHEMA_VERSION:
            store.close()
            raise StoreError(f"{run_dir}: run.db has schema {version!r}, this version reads {SCHEMA_VERSION}")
        return store

    def lock(self) -> None:
        """Take the directory for this driver. The kernel drops the lock when the
        process dies, however it dies, so a killed driver's lock is reclaimed."""
        if self.run_dir is None or self._lock_fd is not None:
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
        self._lock_fd = fd

    def close(self) -> None:
        self._db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- meta and events ---------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, _json(value)))

    def meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else default

    def log_event(self, kind: str, message: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO events (at, kind, message) VALUES (?, ?, ?)", (time.time(), kind, message))

    def events(self) -> list[tuple[float, str, str]]:
        return [tuple(r) for r in self._db.execute("SELECT at, kind, message FROM events ORDER BY id")]

    # -- individuals ------------------------------------------------------------------
    def add_individuals(
        self, generation: int, members: Sequence[tuple[dict, str, list[int]]], *, first_slot: int = 0
    ) -> list[IndividualRecord]:
        """Record the individuals of a generation (genome, origin, parent ids) before evaluation.

        ``first_slot`` lets a steady-state run add a generation's members one at a time."""
        with self._transaction() as db:
            for slot, (genome, origin, parents) in enumerate(members, start=first_slot):
                db.execute(
                    "INSERT INTO individuals (generation, slot, genome, origin, parents) VALUES (?, ?, ?, ?, ?)",
                    (generation, slot, encode_genome(genome), origin, json.dumps(parents)),
                )
        return self.individuals(generation)

    def individuals(self, generation: int | None = None) -> list[IndividualRecord]:
        if generation is None:
            rows = self._db.execute("SELECT * FROM individuals ORDER BY generation, slot")
        else:
            rows = self._db.execute("SELECT * FROM individuals WHERE generation = ? ORDER BY slot", (generation,))
        return [_individual(r) for r in rows]

    def link(self, individual_id: int, trial_id: int) -> None:
        with self._transaction() as db:
            db.execute("UPDATE individuals SET trial_id = ? WHERE id = ?", (trial_id, individual_id))

    # -- trials -----------------------------------------------------------------------
    def start_trial(
        self, *, fingerprint: str, config_key: str, config: Mapping[str, Any], generation: int, seed: int,
        fidelity: float = 1.0, resumed_from: int | None = None,
    ) -> int:
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO trials (fingerprint, config_key, config, generation, seed, status, started_at,"
                " fidelity, resumed_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (fingerprint, config_key, _json(dict(config)), generation, seed, TrialStatus.RUNNING.value,
                 time.time(), fidelity, resumed_from),
            )
            return int(cur.lastrowid)

    def finish_trial(self, trial_id: int, result: TrialResult, individual_id: int | None = None) -> None:
        """Commit a trial's outcome, and link it to its individual in the same transaction."""
        now = time.time()
        with self._transaction() as db:
            started = db.execute("SELECT started_at FROM trials WHERE id = ?", (trial_id,)).fetchone()[0]
            db.execute(
                "UPDATE trials SET status = ?, reason = ?, message = ?, objective_values = ?, metrics = ?,"
                " applied_config = ?, finished_at = ?, duration = ? WHERE id = ?",
                (
                    result.status.value,
                    result.reason.value if result.reason else None,
                    result.message,
                    _json(dict(result.values)),
                    _json(dict(result.metrics)),
                    _json(dict(result.applied_config)) if result.applied_config is not None else None,
                    now,
                    now - started,
                    trial_id,
                ),
            )
            if individual_id is not None:
                db.execute("UPDATE individuals SET trial_id = ? WHERE id = ?", (trial_id, individual_id))

    def copy_trial(self, record: TrialRecord, *, fingerprint: str, config_key: str, note: str) -> int:
        """Import a finished trial from another run (seeding with a matching fingerprint)."""
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO trials (fingerprint, config_key, config, generation, seed, status, reason, message,"
                " objective_values, metrics, applied_config, started_at, finished_at, duration)"
                " VALUES (?, ?, ?, -2, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",  # -2: imported, not run here
                (
                    fingerprint, config_key, _json(record.config), record.seed, record.status.value,
                    record.reason.value if record.reason else None, note, _json(record.values),
                    _json(record.metrics),
                    _json(record.applied_config) if record.applied_config is not None else None,
                    record.started_at, record.finished_at,
                ),
            )
            return int(cur.lastrowid)

    def find_reusable(self, fingerprint: str, config_key: str) -> TrialRecord | None:
        """A finished trial of the same config under the same fitness definition, if one exists."""
        row = self._db.execute(
            "SELECT * FROM trials WHERE fingerprint = ? AND config_key = ?"
            " AND (status = 'complete' OR (status = 'failed' AND reason = ?)) ORDER BY id LIMIT 1",
            (fingerprint, config_key, *CACHEABLE_FAILURES),
        ).fetchone()
        return _trial(row) if row else None

    def trial(self, trial_id: int) -> TrialRecord:
        return _trial(self._db.execute("SELECT * FROM trials WHERE id = ?", (trial_id,)).fetchone())

    def trials(self, generation: int | None = None) -> list[TrialRecord]:
        if generation is None:
            return [_trial(r) for r in self._db.execute("SELECT * FROM trials ORDER BY id")]
        rows = self._db.execute("SELECT * FROM trials WHERE generation = ? ORDER BY id", (generation,))
        return [_trial(r) for r in rows]

    def interrupt_running(self) -> int:
        """Mark trials left RUNNING by a dead driver as killed; their individuals are evaluated again."""
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE trials SET status = 'failed', reason = ?, message = ?, finished_at = ? WHERE status = 'running'",
                (FailureReason.KILLED.value, "in flight when the driver stopped; evaluated again on resume", time.time()),
            )
            return cur.rowcount

    # -- populations and generations ----------------------------------------------------
    def finish_generation(
        self, generation: int, population_ids: Sequence[int], stats: Mapping[str, Any], seed_entropy: str
    ) -> None:
        """Record the survivors of a generation and its statistics: the generation is done."""
        with self._transaction() as db:
            db.execute("DELETE FROM populations WHERE generation = ?", (generation,))
            db.executemany(
                "INSERT INTO populations (generation, rank, individual_id) VALUES (?, ?, ?)",
                [(generation, rank, ind) for rank, ind in enumerate(population_ids)],
            )
            db.execute(
                "INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?)",
                (generation, seed_entropy, time.time(), _json(dict(stats))),
            )

    def population(self, generation: int) -> list[IndividualRecord]:
        rows = self._db.execute(
            "SELECT i.* FROM populations p JOIN individuals i ON i.id = p.individual_id"
            " WHERE p.generation = ? ORDER BY p.rank",
            (generation,),
        )
        return [_individual(r) for r in rows]

    def finished_generations(self) -> list[int]:
        return [r[0] for r in self._db.execute("SELECT generation FROM generations ORDER BY generation")]

    def generation_stats(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT stats FROM generations ORDER BY generation")
        return [json.loads(r[0]) for r in rows]
