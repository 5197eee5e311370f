"""The run.db schema and the migrations that bring an older run up to it.

Every schema change is one entry in ``MIGRATIONS``, so a run directory written by any
earlier release opens in this one; the whole upgrade is one transaction, so a run is
never left half migrated.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from evo.storage._records import StoreError, to_json

SCHEMA_VERSION = 3

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
]


def create(db: sqlite3.Connection) -> None:
    """Lay out an empty database at the current schema (the caller holds the transaction)."""
    for statement in DDL:
        db.execute(statement)
    db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (to_json(SCHEMA_VERSION),))


def stored_version(db: sqlite3.Connection, where: Path | None) -> int:
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{where}: run.db is not a run database ({exc})") from None
    version = json.loads(row[0]) if row else None
    if type(version) is not int or not 1 <= version <= SCHEMA_VERSION:
        raise StoreError(f"{where}: run.db has schema {version!r}, this version reads 1..{SCHEMA_VERSION}")
    return version


def upgrade(db: sqlite3.Connection, version: int) -> None:
    """Apply every migration from ``version`` on (the caller holds the transaction)."""
    for start, statements in MIGRATIONS:
        if start >= version:
            for statement in statements:
                db.execute(statement)
    db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (to_json(SCHEMA_VERSION),))
