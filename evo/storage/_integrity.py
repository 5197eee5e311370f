"""What a run.db must hold before anything reads it, checked when a run is opened.

Every table and column of the current schema, and rows that point at rows that exist
(an individual at its trial, a population or an entry at its individual, a trial at the
checkpoint it continued). A damaged file or row is one line naming the table and row,
never a traceback from deep inside a report. The checks are indexed lookups in SQL
(milliseconds for thousands of trials); a row whose values do not decode (not JSON, an
unknown status) is named where it is read (``_records``).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from evo.storage import _schema
from evo.storage._records import StoreError

# (query returning the first dangling row, the message it fills in)
_REFERENCES = (
    (
        "SELECT i.id, i.trial_id FROM individuals i LEFT JOIN trials t ON t.id = i.trial_id"
        " WHERE i.trial_id IS NOT NULL AND t.id IS NULL ORDER BY i.id LIMIT 1",
        "table individuals, row id {0}: its trial {1} is missing from table trials",
    ),
    (
        "SELECT p.generation, p.rank, p.individual_id FROM populations p LEFT JOIN individuals i"
        " ON i.id = p.individual_id WHERE i.id IS NULL ORDER BY p.generation, p.rank LIMIT 1",
        "table populations, generation {0} rank {1}: its individual {2} is missing from table individuals",
    ),
    (
        "SELECT e.seq, e.individual_id FROM entries e LEFT JOIN individuals i ON i.id = e.individual_id"
        " WHERE i.id IS NULL ORDER BY e.seq LIMIT 1",
        "table entries, row seq {0}: its individual {1} is missing from table individuals",
    ),
    (
        "SELECT t.id, t.resumed_from FROM trials t LEFT JOIN trials r ON r.id = t.resumed_from"
        " WHERE t.resumed_from IS NOT NULL AND r.id IS NULL ORDER BY t.id LIMIT 1",
        "table trials, row id {0}: the trial it continued ({1}) is missing",
    ),
)


def expected_columns() -> dict[str, list[str]]:
    """Each table of the current schema and its columns, read from the schema itself."""
    with contextlib.closing(sqlite3.connect(":memory:")) as db:
        _schema.create(db)
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: [c[1] for c in db.execute(f"PRAGMA table_info({t})")] for t in tables}


def check(db: sqlite3.Connection, where: Path | None) -> None:
    """Raise StoreError naming the first missing table or column, or dangling row."""
    try:
        for table, columns in expected_columns().items():
            found = {c[1] for c in db.execute(f"PRAGMA table_info({table})")}
            if not found:
                raise StoreError(f"{where}: run.db is damaged: table {table} is missing")
            missing = [c for c in columns if c not in found]
            if missing:
                raise StoreError(f"{where}: run.db is damaged: table {table} has no column {missing[0]}")
        for query, message in _REFERENCES:
            row = db.execute(query).fetchone()
            if row is not None:
                raise StoreError(f"{where}: run.db is damaged: {message.format(*row)}")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{where}: run.db is damaged: {exc}") from None
