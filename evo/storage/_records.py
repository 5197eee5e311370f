"""What the store hands out: trial and individual records, and how rows become them.

Genomes are stored as versioned JSON (``{"v": 1, "genes": {...}}``), never pickles,
so any later version of the tool, or any other program, can read a run.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from evo._errors import OneLineError
from evo.trial import FailureReason, TrialStatus

GENOME_FORMAT = 1

# Rows that are not a generation of the search. Both sort below generation 0, so
# ``generation > BASELINE_GENERATION`` selects the search's own rows and
# ``generation >= BASELINE_GENERATION`` adds the baseline (never imported trials).
BASELINE_GENERATION = -1  # the untuned reference config, evaluated once
IMPORTED_GENERATION = -2  # a trial copied from the run a warm start came from, not run here

# Besides complete trials, the failures that belong to the genome itself are reused;
# an OOM, a timeout or a crash may not happen again, so those genomes are evaluated anew.
CACHEABLE_FAILURES = (FailureReason.DIVERGED.value,)


class StoreError(OneLineError):
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
    genes = data["genes"]
    if not isinstance(genes, dict):
        raise ValueError(f"genome genes are {shorten(repr(genes))}, not a JSON object")
    return genes


def to_json(value: Any) -> str:
    """Configs and metrics of trials; NaN kept, unknown objects as their str."""
    return json.dumps(value, sort_keys=True, default=str, allow_nan=True)


def meta_json(value: Any) -> str:
    """Meta values keep their key order: the order of the run config's genes decides how
    breeding draws its random numbers, so a resumed run must read them as written."""
    return json.dumps(value, default=str, allow_nan=True)


def trial_from_row(row: sqlite3.Row) -> TrialRecord:
    """The trial in ``row``; a row that cannot be one is a StoreError naming it."""
    with damaged_row("trials", row):
        return TrialRecord(
            id=row["id"],
            config=_object(row, "config"),
            generation=row["generation"],
            seed=row["seed"],
            status=TrialStatus(row["status"]),
            reason=FailureReason(row["reason"]) if row["reason"] else None,
            message=row["message"],
            values=_values(row),
            metrics=_object(row, "metrics"),
            applied_config=_object(row, "applied_config") if row["applied_config"] else None,
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            duration=row["duration"],
            fidelity=row["fidelity"],
            resumed_from=row["resumed_from"],
            fingerprint=row["fingerprint"],
        )


def individual_from_row(row: sqlite3.Row) -> IndividualRecord:
    """The individual in ``row``; a row that cannot be one is a StoreError naming it."""
    with damaged_row("individuals", row):
        parents = json.loads(row["parents"])
        if not isinstance(parents, list):
            raise ValueError(f"parents is {row['parents']!r}, not a list")
        return IndividualRecord(
            id=row["id"],
            generation=row["generation"],
            slot=row["slot"],
            genome=decode_genome(row["genome"]),
            origin=row["origin"],
            parents=parents,
            trial_id=row["trial_id"],
        )


@contextlib.contextmanager
def damaged_row(table: str, row: sqlite3.Row | None, what: str = "row") -> Iterator[None]:
    """Turn a row that does not decode (a value that is not JSON, an unknown status, a
    missing column) into one StoreError line naming its table and row."""
    if row is None:
        raise StoreError(f"run.db is damaged: a {what} of table {table} is missing")
    try:
        yield
    except StoreError as exc:
        raise StoreError(f"run.db is damaged: table {table}, {what} {_row_id(row)}: {exc}") from None
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
        problem = str(exc) if not isinstance(exc, (KeyError, IndexError)) else f"no column {exc}"
        problem = problem.replace("No item with that key", "a column is missing")
        raise StoreError(f"run.db is damaged: table {table}, {what} {_row_id(row)}: {shorten(problem)}") from None


def _row_id(row: sqlite3.Row) -> str:
    key = next((k for k in ("id", "generation", "key") if k in row.keys()), None)
    return f"{key} {row[key]}" if key else "?"


def _object(row: sqlite3.Row, column: str) -> dict[str, Any]:
    """A JSON object column; anything else is damage."""
    try:
        value = json.loads(row[column])
    except (json.JSONDecodeError, TypeError):
        raise ValueError(f"{column} is not JSON ({shorten(repr(row[column]))})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{column} is {shorten(repr(value))}, not a JSON object")
    return value


def _values(row: sqlite3.Row) -> dict[str, float]:
    values = _object(row, "objective_values")
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"objective_values[{name!r}] is {shorten(repr(value))}, not a number")
    return values


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters for a message line, saying how much was cut."""
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text):,} characters)"
