"""Live progress of a run on the terminal: generation, trial, best so far, ETA."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from evo.config import MAX_GENERATIONS
from evo.evaluation import RunInfo, RunObserver, duration
from evo.storage import BASELINE_GENERATION, TrialRecord
from evo.trial import Direction


class TerminalProgress(RunObserver):
    """One line per trial and per generation on a stream (stderr by default).

    The ETA assumes the remaining trials take as long as the mean real trial so far;
    cache hits are free and counted as such.
    """

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.best: float | None = None

    def start(self, run: RunInfo) -> None:
        self.spending = run.spending if run.config.run_budget is not None else None
        self.generations = run.config.evolution.planned_generations
        self.objective = run.objectives[0]
        self.remaining_gens = self.generations - run.first_generation + 1
        self.durations: list[float] = []
        self.t0 = time.monotonic()
        if run.run_dir is not None:
            self._print(f"run directory: {run.run_dir}")

    def generation(self, gen: int, size: int) -> None:
        self.gen, self.size, self.index = gen, size, 0
        of = "" if self.spending is not None and self.generations >= MAX_GENERATIONS else f"/{self.generations}"
        self._print(f"generation {gen}{of}: {size} trials")

    def trial(self, record: TrialRecord, cached: bool) -> None:
        if record.generation == BASELINE_GENERATION and not cached:
            self._print(f"  baseline: {self._outcome(record)}")
            self._remember(record, count_best=False)
            return
        self.index = getattr(self, "index", 0) + 1
        self._remember(record, count_best=True)
        tag = "cached" if cached else f"{record.duration or 0:.1f}s"
        if not cached and "device_label" in record.metrics:  # several devices finish in any order
            tag += f" on {record.metrics['device_label']}"
        best = f"{self.best:.4g}" if self.best is not None else "-"
        spent = f" | {self.spending.summary()}" if self.spending is not None else ""
        self._print(
            f"  gen {self.gen} trial {self.index}/{self.size} [{tag}] {self._outcome(record)}"
            f" | best {best}{spent} | ETA {self._eta()}"
        )

    def generation_done(self, stats: Mapping[str, Any]) -> None:
        self.remaining_gens -= 1
        fmt = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
        self._print(
            f"generation {stats['gen']} done: best {fmt(stats['best'])} median {fmt(stats['median'])}"
            f" worst {fmt(stats['worst'])} diversity {stats['diversity']:.2f}"
            f" ({stats['evals']} evaluated, {stats['cached']} cached, {stats['failed']} failed)"
        )

    def end(self) -> None:
        self._print(f"done in {time.monotonic() - self.t0:.1f}s")

    # -----------------------------------------------------------------------------------
    def _remember(self, record: TrialRecord, count_best: bool) -> None:
        if record.duration and record.generation >= BASELINE_GENERATION:
            self.durations.append(record.duration)
        if count_best and record.ok and record.full:
            value = record.values[self.objective.name]
            minimize = self.objective.direction is Direction.MINIMIZE
            if self.best is None or (value < self.best if minimize else value > self.best):
                self.best = value

    def _outcome(self, record: TrialRecord) -> str:
        if record.ok:
            at = "" if record.full else f" at {record.fidelity:.3g} of the budget"
            return f"{self.objective.name}={record.values[self.objective.name]:.4g}{at}"
        return f"{record.status.value} ({record.reason.value if record.reason else '-'}): {record.message[:120]}"

    def _eta(self) -> str:
        """Until the last generation ends or the run budget runs out, whichever comes first."""
        etas = []
        if self.durations:
            left = (self.size - self.index) + (self.remaining_gens - 1) * self.size
            etas.append(left * sum(self.durations) / len(self.durations))
        if self.spending is not None and self.spending.eta_seconds() is not None:
            etas.append(self.spending.eta_seconds())
        return duration(min(etas)) if etas else "?"

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
