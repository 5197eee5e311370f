"""The run store: one SQLite database per run, committed per evaluation.

Layout of a run directory::

    RUN_DIR/config.yaml   the resolved run config, for people
    RUN_DIR/run.db        this store
    RUN_DIR/.lock         the pid of the one driver writing the directory (the lock is the
                          directory's own flock: see ``_lock``)
    RUN_DIR/best/         artifacts of the best trial so far (see RunFiles)

A run kept in memory is the same store without a directory. Both are made by
``RunStore.create``, so every run carries the same meta from its first commit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evo.storage import _integrity, _schema
from evo.storage._database import Database, in_memory_copy
from evo.storage._guard import check_new_run
from evo.storage._lock import RunDirLock
from evo.storage._records import (
    CACHEABLE_FAILURES,
    IMPORTED_GENERATION,
    IndividualRecord,
    StoreError,
    TrialRecord,
    encode_genome,
    meta_json,
    to_json,
)
from evo.trial import FailureReason, Objective, TrialResult, TrialStatus

INTERRUPTED = "in flight when the driver stopped; evaluated again on resume"  # a killed driver's trials

_TRIAL_COLUMNS = (
    "id", "fingerprint", "config_key", "config", "generation", "seed", "status", "reason", "message",
    "objective_values", "metrics", "applied_config", "started_at", "finished_at", "duration", "fidelity", "resumed_from",
)  # fmt: skip


class RunStore(Database):
    """Reads and writes one run. Every write is its own committed transaction.

    Make one with ``create`` (a new run), ``open`` (an existing run directory, for the
    driver) or ``read`` (an existing run, read-only: every command that changes nothing);
    the constructor only connects (``Database``).
    """

    # -- lifecycle --------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        run_dir: Path | str | None,
        *,
        config: Mapping[str, Any],
        fingerprint: str,
        objectives: Sequence[Objective] = (),
        environment: Mapping[str, Any] | None = None,
        warm_start: Sequence[Mapping[str, Any]] = (),
        warm_started_from: str | None = None,
    ) -> RunStore:
        """A new run in ``run_dir`` (locked for this driver), or in memory for None.

        config.yaml is written once run.db holds the run, so a config.yaml beside a run.db
        that holds none is never a run's (``check_new_run`` refuses a folder with one)."""
        lock = None
        if run_dir is not None:
            run_dir = Path(run_dir)
            check_new_run(run_dir)
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{run_dir}: cannot make the run directory ({exc.strerror})") from None
            lock = RunDirLock(run_dir)
            lock.acquire()  # before run.db is touched: another driver may be creating it
            try:
                check_new_run(run_dir)
                _schema.remove_unborn(run_dir / "run.db")
            except BaseException:
                lock.release()
                raise
        store = cls(run_dir)
        if lock is not None:
            store._lock = lock
        try:
            meta = {
                "created_at": time.time(),
                "config": dict(config),
                "fingerprint": fingerprint,
                "objectives": [{"name": o.name, "direction": o.direction.value} for o in objectives],
                "environment": dict(environment or {}),
                "warm_start_genomes": [dict(g) for g in warm_start],
            }
            if warm_started_from is not None:
                meta["warm_started_from"] = warm_started_from
            with store._transaction() as db:
                _schema.create(db)
                db.executemany(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, meta_json(v)) for k, v in meta.items()]
                )
            store.write_config_file(config)
        except BaseException:
            store.close()
            raise
        return store

    @staticmethod
    def check_new(run_dir: Path | str) -> None:
        """Raise a one-line error unless a new run can be made in ``run_dir`` (``check_new_run``)."""
        check_new_run(run_dir)

    @classmethod
    def open(cls, run_dir: Path | str) -> RunStore:
        """An existing run directory, for its driver: migrated to the current schema if it is older."""
        return cls._existing(Path(run_dir), read_only=False)

    @classmethod
    def read(cls, run_dir: Path | str) -> RunStore:
        """An existing run directory, read-only: what every command that changes nothing opens.
        It never writes a byte of the run (an older schema is migrated in a copy in memory),
        works on a read-only directory, and reads a run while its driver writes it."""
        return cls._existing(Path(run_dir), read_only=True)

    @classmethod
    def _existing(cls, run_dir: Path, *, read_only: bool) -> RunStore:
        if not (run_dir / "run.db").is_file():
            raise StoreError(f"{run_dir}: not a run directory (no run.db)")
        if not _schema.holds_run(run_dir / "run.db"):  # checked before anything can write to the file
            raise StoreError(
                f"{run_dir}: holds no run (its driver was stopped while creating it); start it again with 'evo run'"
            )
        store = cls(run_dir, read_only=read_only)
        try:
            version = _schema.stored_version(store._db, run_dir)
            if version < _schema.SCHEMA_VERSION and read_only:
                store._db = in_memory_copy(store._db)
            if version < _schema.SCHEMA_VERSION:
                with store._transaction() as db:  # read again: another process may have migrated it
                    _schema.upgrade(db, _schema.stored_version(db, run_dir), run_dir)
            _integrity.check(store._db, run_dir)
        except BaseException:
            store.close()
            raise
        return store

    def verify(self) -> None:
        """Decode every row once, so that a damaged one is named before a resume builds its
        fitness. (A read names a damaged row where it decodes it; opening checks only the
        tables, columns and references, in SQL, which costs nothing next to decoding.)"""
        for key in ("config", "objectives", "fingerprint"):
            self.meta(key)
        self.trials()
        self.individuals()
        self.generation_stats()

    # -- meta -------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, meta_json(value)))

    def set_config(self, config: Mapping[str, Any]) -> None:
        """Replace the run's resolved config (``evo resume`` with a new run budget), in run.db
        and in config.yaml, which is written aside and renamed so that it is never half written."""
        self.set_meta("config", dict(config))
        self.write_config_file(config)

    # -- individuals ------------------------------------------------------------------
    def add_individuals(
        self, generation: int, members: Sequence[tuple[dict[str, Any], str, list[int]]], *, first_slot: int = 0
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
            rows = self._query("SELECT * FROM individuals ORDER BY generation, slot")
        else:
            rows = self._query("SELECT * FROM individuals WHERE generation = ? ORDER BY slot", (generation,))
        return [self._individual(r) for r in rows]

    def link(self, individual_id: int, trial_id: int) -> None:
        with self._transaction() as db:
            db.execute("UPDATE individuals SET trial_id = ? WHERE id = ?", (trial_id, individual_id))

    # -- trials -----------------------------------------------------------------------
    def start_trial(
        self,
        *,
        fingerprint: str,
        config_key: str,
        config: Mapping[str, Any],
        generation: int,
        seed: int,
        fidelity: float = 1.0,
        resumed_from: int | None = None,
    ) -> int:
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO trials (fingerprint, config_key, config, generation, seed, status, started_at,"
                " fidelity, resumed_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    fingerprint,
                    config_key,
                    to_json(dict(config)),
                    generation,
                    seed,
                    TrialStatus.RUNNING.value,
                    time.time(),
                    fidelity,
                    resumed_from,
                ),
            )
            return int(cur.lastrowid or 0)

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
                    to_json(dict(result.values)),
                    to_json(dict(result.metrics)),
                    to_json(dict(result.applied_config)) if result.applied_config is not None else None,
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
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (
                    fingerprint,
                    config_key,
                    to_json(record.config),
                    IMPORTED_GENERATION,
                    record.seed,
                    record.status.value,
                    record.reason.value if record.reason else None,
                    note,
                    to_json(record.values),
                    to_json(record.metrics),
                    to_json(record.applied_config) if record.applied_config is not None else None,
                    record.started_at,
                    record.finished_at,
                ),
            )
            return int(cur.lastrowid or 0)

    def find_reusable(self, fingerprint: str, config_key: str) -> TrialRecord | None:
        """A finished trial of the same config under the same fitness definition, if one exists."""
        row = self._query(
            "SELECT * FROM trials WHERE fingerprint = ? AND config_key = ?"
            " AND (status = 'complete' OR (status = 'failed' AND reason = ?)) ORDER BY id LIMIT 1",
            (fingerprint, config_key, *CACHEABLE_FAILURES),
        ).fetchone()
        return self._trial(row) if row else None

    def trial(self, trial_id: int) -> TrialRecord:
        return self._trial(self._query("SELECT * FROM trials WHERE id = ?", (trial_id,)).fetchone())

    def trials(self, generation: int | None = None) -> list[TrialRecord]:
        if generation is None:
            return [self._trial(r) for r in self._query("SELECT * FROM trials ORDER BY id")]
        rows = self._query("SELECT * FROM trials WHERE generation = ? ORDER BY id", (generation,))
        return [self._trial(r) for r in rows]

    # -- steady-state entries -----------------------------------------------------------
    def enter(self, individual_id: int, state_key: str, population: Sequence[int]) -> None:
        """Record that an individual entered a steady-state population, and the population
        it left behind (in meta under ``state_key``), in one transaction."""
        with self._transaction() as db:
            db.execute("INSERT INTO entries (individual_id) VALUES (?)", (individual_id,))
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", (state_key, meta_json({"population": list(population)}))
            )

    def entries(self) -> list[int]:
        """Individual ids in the order they entered a steady-state population."""
        return [r[0] for r in self._query("SELECT individual_id FROM entries ORDER BY seq")]

    def outcomes(self, *, after: int, also: Sequence[int] = ()) -> list[TrialRecord]:
        """Trials with an id above ``after``, and those in ``also``, without their metrics
        (curves are most of a row): what a model of the results needs, read incrementally."""
        columns = ", ".join(f"'{{}}' AS {c}" if c == "metrics" else c for c in _TRIAL_COLUMNS)
        marks = ", ".join("?" * len(also))
        where = f"id > ? OR id IN ({marks})" if also else "id > ?"
        rows = self._query(f"SELECT {columns} FROM trials WHERE {where} ORDER BY id", (after, *also))
        return [self._trial(r) for r in rows]

    def interrupt_running(self) -> int:
        """Mark trials left RUNNING by a dead driver as killed; their individuals are evaluated again."""
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE trials SET status = 'failed', reason = ?, message = ?, finished_at = ? WHERE status = 'running'",
                (FailureReason.KILLED.value, INTERRUPTED, time.time()),
            )
            return cur.rowcount

    def spent(self) -> list[tuple[TrialStatus, float, float | None]]:
        """(its status, the fraction of the budget it added, train_tokens or None) of every trial
        this run trained to its end: not the ones in flight, not those a dead driver left (trained
        again on resume), not imported ones. A trial that continued a checkpoint added its fidelity
        less the one it resumed from."""
        rows = self._query(
            "SELECT t.status, t.fidelity - COALESCE(r.fidelity, 0), json_extract(t.metrics, '$.train_tokens')"
            " FROM trials t LEFT JOIN trials r ON r.id = t.resumed_from"
            " WHERE t.status != 'running' AND t.generation != ? AND NOT (t.status = 'failed' AND t.message = ?)"
            " ORDER BY t.id",
            (IMPORTED_GENERATION, INTERRUPTED),
        )
        return [(TrialStatus(row[0]), row[1], row[2]) for row in rows]

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
                (generation, seed_entropy, time.time(), to_json(dict(stats))),
            )

    def population(self, generation: int) -> list[IndividualRecord]:
        rows = self._query(
            "SELECT i.* FROM populations p JOIN individuals i ON i.id = p.individual_id"
            " WHERE p.generation = ? ORDER BY p.rank",
            (generation,),
        )
        return [self._individual(r) for r in rows]

    def finished_generations(self) -> list[int]:
        return [r[0] for r in self._query("SELECT generation FROM generations ORDER BY generation")]

    def generation_stats(self) -> list[dict[str, Any]]:
        rows = self._query("SELECT generation, stats FROM generations ORDER BY generation")
        out = []
        for row in rows:
            try:
                out.append(json.loads(row["stats"]))
            except (TypeError, ValueError):
                raise StoreError(
                    f"{self.run_dir}: run.db is damaged: table generations, generation {row['generation']}: "
                    "stats is not JSON"
                ) from None
        return out
