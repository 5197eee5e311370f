"""The step's side of the check: what it has measured so far, on disk after every change.

A step runs in its own process under a time limit; when the harness kills it, what it
wrote last is still there. ``step_main`` is the entry point every step module shares:
``python -m evobench.gpu_check.<step> OPTIONS.json RECORD.json``.
"""

from __future__ import annotations

import enum
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


class StepStatus(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"  # a check did not hold, or the step raised
    SKIPPED = "skipped"  # nothing to check here (gpu tests without a GPU)
    TIMED_OUT = "timed out"  # killed at its time limit; its record holds what it measured until then
    RUNNING = "running"  # only in a record whose process has not finished (or was killed)


@dataclass(frozen=True)
class Options:
    """What the whole check was asked for; every step reads the same."""

    device: str = "cuda"  # cuda or cpu
    quick: bool = False  # the tiny model and small sizes: a minute or two on a CPU
    ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32)  # cohort sizes of the cohort step
    root: str = "."  # the checkout: tests/ and experiments/ are read from here

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "ks": list(self.ks)})

    @classmethod
    def from_json(cls, text: str) -> Options:
        values = json.loads(text)
        return cls(**{**values, "ks": tuple(values["ks"])})


@dataclass
class Record:
    """A step's findings: a one-line ``summary``, ``details`` for the JSON, ``markdown`` for the page."""

    path: Path
    status: StepStatus = StepStatus.RUNNING
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    markdown: list[str] = field(default_factory=list)

    def update(self, summary: str | None = None, **details: Any) -> None:
        """Keep ``details`` (merged) and the summary, and write the record at once."""
        if summary is not None:
            self.summary = summary
        self.details.update(details)
        self.write()

    def finish(self, status: StepStatus, summary: str) -> None:
        self.status, self.summary = status, summary
        self.write()

    def write(self) -> None:
        text = json.dumps(
            {"status": self.status.value, "summary": self.summary, "details": self.details, "markdown": self.markdown},
            indent=1,
            default=str,
        )
        staging = self.path.with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(text)
        staging.replace(self.path)  # the harness never reads half a file


def load_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def step_main(run: Callable[[Options, Record], tuple[StepStatus, str]]) -> None:
    """Run one step from the command line; an exception fails it with its first line and traceback."""
    options = Options.from_json(Path(sys.argv[1]).read_text())
    record = Record(Path(sys.argv[2]))
    record.write()
    start = time.perf_counter()
    try:
        status, summary = run(options, record)
    except BaseException as exc:  # the step's failure is its result, whatever it is
        record.details["traceback"] = traceback.format_exc(limit=12)
        record.finish(StepStatus.FAILED, f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
        raise SystemExit(1) from None
    record.details["step_seconds"] = round(time.perf_counter() - start, 1)
    record.finish(status, summary)
