"""The collection's JSON Lines file: appended, flushed and fsynced as each trial ends.

* line 1, ``{"kind": "header", "format": 1, "collection": KEY, ...}``: the fitness
  fingerprint and section, budget, search space, fixed values, sampler and
  ``eval_every`` that produced every trial of the file. KEY hashes what makes trials
  comparable; a file with another KEY is refused.
* then one ``{"kind": "trial", "collection": KEY, "index": i, ...}`` per finished trial,
  in order of completion (the fields: see ``loop.record_for``).

A kill can only cut the last line short: it is dropped on the next open and its trial runs again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import IO, Any

from evo.trial import ConfigError
from evobench.collect.plan import CollectionPlan

FORMAT = 1


def header_for(plan: CollectionPlan, fitness: Any) -> dict[str, Any]:
    identity = plan.identity(fitness.fingerprint())
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    import scipy

    return {
        "kind": "header",
        "format": FORMAT,
        "collection": key,
        **identity,
        "fitness": plan.fitness_spec,
        "scipy": scipy.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def open_data_file(path: Path, header: dict[str, Any]) -> set[int]:
    """Indices already collected; writes the header into a new file, drops a partial last line."""
    rows, good_bytes = read_rows(path)
    if not rows:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(json_line(header))
            _sync(f)
        return set()
    first = rows[0]
    if first.get("kind") != "header" or first.get("collection") != header["collection"]:
        raise ConfigError(
            f"{path}: collected under another config (collection {first.get('collection')!r}, "
            f"this one is {header['collection']!r}); use another --data-file"
        )
    if good_bytes < path.stat().st_size:
        os.truncate(path, good_bytes)  # the line a kill cut short: its trial runs again
    return {row["index"] for row in rows[1:] if row.get("kind") == "trial"}


def read_rows(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The complete JSON lines of ``path`` and their byte length; a broken line before the last is an error."""
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    lines = data.split(b"\n")
    rows, good = [], 0
    complete = lines[:-1]  # lines[-1] is b"" or a line a kill cut short (no newline)
    for n, line in enumerate(complete, 1):
        try:
            rows.append(json.loads(line))
        except ValueError:
            if n < len(complete):  # only the last line can be a torn write
                raise ConfigError(f"{path}:{n}: not a JSON line; fix or move the file") from None
        else:
            good += len(line) + 1
    return rows, good


def append(path: Path, record: dict[str, Any]) -> None:
    with open(path, "ab") as f:
        f.write(json_line(record))
        _sync(f)


def json_line(record: dict[str, Any]) -> bytes:
    return (json.dumps(_finite(record), allow_nan=False) + "\n").encode()


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _sync(f: IO[bytes]) -> None:
    f.flush()
    os.fsync(f.fileno())
