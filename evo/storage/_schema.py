"""The run.db schema and the migrations that bring an older run up to it.

Every schema change is one entry in ``MIGRATIONS``, so a run directory written by any
earlier release opens in this one; the whole upgrade is one transaction, so a run is
never left half migrated.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import yaml

from evo.storage._records import StoreError, meta_json, to_json
from evo.storage._sqlite import connect, explain

SCHEMA_VERSION = 5

# The current schema, one statement each (executed inside the creating transaction).
DDL: tuple[str, ...] = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE trials (
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
    )""",
    "CREATE INDEX trials_by_config ON trials (fingerprint, config_key)",
    "CREATE INDEX trials_by_generation ON trials (generation)",
    """CREATE TABLE individuals (
        id INTEGER PRIMARY KEY,
        generation INTEGER NOT NULL,
        slot INTEGER NOT NULL,
        genome TEXT NOT NULL,
        origin TEXT NOT NULL,
        parents TEXT NOT NULL DEFAULT '[]',
        trial_id INTEGER REFERENCES trials (id),
        UNIQUE (generation, slot)
    )""",
    """CREATE TABLE populations (
        generation INTEGER NOT NULL,
        rank INTEGER NOT NULL,
        individual_id INTEGER NOT NULL REFERENCES individuals (id),
        PRIMARY KEY (generation, rank)
    )""",
    # The order in which individuals entered a steady-state population, one row each: appending
    # stays cheap however long the run (a list in meta was rewritten whole at every entry).
    "CREATE TABLE entries (seq INTEGER PRIMARY KEY, individual_id INTEGER NOT NULL REFERENCES individuals (id))",
    """CREATE TABLE generations (
        generation INTEGER PRIMARY KEY,
        seed_entropy TEXT NOT NULL,
        finished_at REAL NOT NULL,
        stats TEXT NOT NULL
    )""",
)

# (version upgraded from, its statements), in order; the last one ends at SCHEMA_VERSION.
MIGRATIONS: list[tuple[int, tuple[str, ...]]] = [
    # 1 -> 2: runs of the first release; every trial was a whole fresh training.
    (
        1,
        (
            "ALTER TABLE trials ADD COLUMN fidelity REAL NOT NULL DEFAULT 1.0",
            "ALTER TABLE trials ADD COLUMN resumed_from INTEGER",
        ),
    ),
    # 2 -> 3: the events table was never written.
    (2, ("DROP TABLE IF EXISTS events",)),
    # 3 -> 4: steady-state entries in a table; trials found by generation without a scan.
    (
        3,
        (
            "CREATE INDEX trials_by_generation ON trials (generation)",
            "CREATE TABLE entries (seq INTEGER PRIMARY KEY, individual_id INTEGER NOT NULL REFERENCES individuals (id))",
        ),
    ),
    # 4 -> 5: a first population from an earlier run is a warm start ("seed" is the random seed).
    (
        4,
        (
            "UPDATE meta SET key = 'warm_start_genomes' WHERE key = 'seed_genomes'",
            "UPDATE meta SET key = 'warm_started_from' WHERE key = 'seeded_from'",
            "UPDATE individuals SET origin = 'warm_start' WHERE origin = 'seed'",
        ),
    ),
]


def create(db: sqlite3.Connection) -> None:
    """Lay out an empty database at the current schema (the caller holds the transaction)."""
    for statement in DDL:
        db.execute(statement)
    db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (to_json(SCHEMA_VERSION),))


def holds_run(path: Path) -> bool:
    """Whether ``path`` is a run.db with something in it, read without writing (a read-only
    directory is no error); one that is not an SQLite database at all is a StoreError, so
    that nothing ever overwrites it."""
    if not path.exists():
        return False
    with contextlib.closing(connect(path, read_only=True)) as db:
        try:
            return bool(db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise explain(exc, path) from None


def remove_unborn(path: Path) -> None:
    """Remove a run.db whose driver died inside the transaction that creates it: an
    SQLite database without a table (callers check ``holds_run`` first)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def stored_version(db: sqlite3.Connection, where: Path | None) -> int:
    try:
        if not db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise StoreError(
                f"{where}: holds no run (its driver was stopped while creating it); start it again with 'evo run'"
            )
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{where}: run.db is not a run database ({exc})") from None
    version = json.loads(row[0]) if row else None
    if type(version) is not int or not 1 <= version <= SCHEMA_VERSION:
        raise StoreError(f"{where}: run.db has schema {version!r}, this version reads 1..{SCHEMA_VERSION}")
    return version


def upgrade(db: sqlite3.Connection, version: int, run_dir: Path) -> None:
    """Apply every migration from ``version`` on (the caller holds the transaction)."""
    for start, statements in MIGRATIONS:
        if start >= version:
            for statement in statements:
                db.execute(statement)
    if version < 3:
        restore_config_order(db, run_dir)
    if version < 4:
        move_entries_out_of_meta(db)
    db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (to_json(SCHEMA_VERSION),))


def restore_config_order(db: sqlite3.Connection, run_dir: Path) -> None:
    """Stores before schema 3 kept the run config with sorted keys, so a resumed run bred
    with its genes in alphabetical order instead of the config's. RUN_DIR/config.yaml has
    the written order: take it when it holds the same config."""
    row = db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
    try:
        written = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return
    if row is not None and written == json.loads(row[0]):
        db.execute("UPDATE meta SET value = ? WHERE key = 'config'", (meta_json(written),))


def move_entries_out_of_meta(db: sqlite3.Connection) -> None:
    """Steady-state runs before schema 4 kept their order of entry as a list in meta."""
    row = db.execute("SELECT value FROM meta WHERE key = 'steady_state'").fetchone()
    if row is None:
        return
    state = json.loads(row[0])
    db.executemany("INSERT INTO entries (individual_id) VALUES (?)", [(i,) for i in state.pop("entered", [])])
    db.execute("UPDATE meta SET value = ? WHERE key = 'steady_state'", (meta_json(state),))
