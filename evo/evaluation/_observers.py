"""Observers of a run: progress display, plot refresh, experiment trackers.

The loop calls every observer at the same points; an observer never changes the run.
An observer that raises is reported once and dropped, so a broken logger cannot stop
an evolution that has hours of training behind it; except for a full disk, which stops
the run with one line (the next write of run.db would fail anyway).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evo.storage import DiskFull, TrialRecord, is_disk_full
from evo.trial import Objective


@dataclass(frozen=True)
class RunInfo:
    run_dir: Path | None
    config: Any  # evo.config.RunConfig
    objectives: tuple[Objective, ...]
    first_generation: int
    spending: Any = None  # evo.evaluation._spending.Spending: what the run has spent of its run_budget


class RunObserver:
    """Base class: every hook does nothing."""

    def start(self, run: RunInfo) -> None: ...
    def generation(self, gen: int, size: int) -> None: ...  # size: trials planned (rungs count each)
    def trial(self, record: TrialRecord, cached: bool) -> None: ...
    def generation_done(self, stats: Mapping[str, Any]) -> None: ...
    def end(self) -> None: ...


class Fanout(RunObserver):
    def __init__(self, observers: Sequence[RunObserver]):
        self.observers = list(observers)

    def _call(self, hook: str, *args: Any) -> None:
        for observer in list(self.observers):
            try:
                getattr(observer, hook)(*args)
            except Exception as exc:  # noqa: BLE001 - see module docstring
                if is_disk_full(exc) or isinstance(exc, DiskFull):
                    raise
                print(
                    f"warning: {type(observer).__name__} failed in {hook} and is switched off: {exc}", file=sys.stderr
                )
                self.observers.remove(observer)

    def start(self, run: RunInfo) -> None:
        self._call("start", run)

    def generation(self, gen: int, size: int) -> None:
        self._call("generation", gen, size)

    def trial(self, record: TrialRecord, cached: bool) -> None:
        self._call("trial", record, cached)

    def generation_done(self, stats: Mapping[str, Any]) -> None:
        self._call("generation_done", stats)

    def end(self) -> None:
        self._call("end")
