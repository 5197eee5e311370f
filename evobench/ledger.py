"""The compute ledger: every method of the fidelity benchmark spends the same training tokens.

A :class:`Ledger` wraps the fitness a run drives: it counts the training tokens each trial
reports, records whole-budget results, and stops the run at the first trial that would start
past the limit. Only trials trained on the whole budget count towards "best so far": a rung's
or a pruned trial's value does not compare, so a method pays for every token it spends on a
candidate, promoted or not. Ledgers saved with ``--save`` read back as :class:`SavedLedger`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from evo.trial import FitnessBase, Trial, TrialResult

Point = tuple[int, "float | None", float]  # tokens spent so far, whole-budget value or None, seconds


class BudgetSpent(BaseException):
    """Raised past the token budget; a BaseException so that no trial-level handler swallows it."""


class Ledger(FitnessBase):
    """Wraps the fitness: counts training tokens, records whole-budget results, stops at the limit."""

    def __init__(self, fitness: Any, limit_tokens: int, seed: int | None = None) -> None:
        self.fitness, self.limit, self.seed = fitness, limit_tokens, seed  # seed: for the seed-by-seed table
        self.objectives = fitness.objectives
        self.structural_genes, self.genes = fitness.structural_genes, fitness.genes
        self.intermediate_values = fitness.intermediate_values
        self.spent, self.t0 = 0, time.perf_counter()
        self.points: list[Point] = []

    def fingerprint(self) -> str:
        return self.fitness.fingerprint()

    def describe(self) -> dict[str, Any]:
        return self.fitness.describe()

    def close(self) -> None:  # the fitness outlives the run: the next run reuses its worker
        pass

    def evaluate(self, trial: Trial) -> TrialResult:
        if self.spent >= self.limit:
            raise BudgetSpent
        result = self.fitness.evaluate(trial)
        self.spent += int(result.metrics.get("train_tokens", 0))
        self.t0 -= result.metrics.get("replayed_seconds", 0.0)  # a trial answered from --cache: its first time
        value = result.values.get(self.objectives[0].name) if result.ok and trial.fidelity >= 1 else None
        self.points.append((self.spent, value, time.perf_counter() - self.t0))
        return result


def best_at(points: list[Point], tokens: float) -> float:
    """Best whole-budget value among the trials finished within ``tokens``; inf if none."""
    values = [v for spent, v, _ in points if spent <= tokens * (1 + 1e-9) and v is not None]
    return min(values) if values else math.inf


class SavedLedger:
    """A ledger read back from ``--save`` output: the report only needs its points."""

    def __init__(self, points: list, seed: int | None) -> None:
        self.points, self.seed = [tuple(p) for p in points], seed


def save(path: Path | str, task: str, limit: int, unit: int, runs: dict[str, list[Ledger]]) -> None:
    """Every run's ledger so far, by method label: written after every run, so a long benchmark
    stopped early keeps what it measured."""
    saved = {
        "task": task,
        "limit": limit,
        "unit": unit,
        "runs": {k: [led.points for led in v] for k, v in runs.items() if v},
        "seeds": {k: [led.seed for led in v] for k, v in runs.items() if v},
    }
    Path(path).write_text(json.dumps(saved))


def load_saved(paths: list[str]) -> tuple[str, int, int, dict[str, list[SavedLedger]]]:
    """The runs of several ``--save`` files (same task and budget): task, limit, unit and runs."""
    runs: dict[str, list[SavedLedger]] = {}
    first = None
    for path in paths:
        saved = json.loads(Path(path).read_text())
        shape = (saved["task"], saved["limit"], saved["unit"])
        if first is not None and shape != first:
            raise SystemExit(f"{path}: task/budget {shape} differs from {first}; cannot merge")
        first = shape
        for method, ledgers in saved["runs"].items():
            seeds = saved.get("seeds", {}).get(method, [None] * len(ledgers))  # older files: no seeds
            runs.setdefault(method, []).extend(SavedLedger(points, seed) for points, seed in zip(ledgers, seeds))
    assert first is not None  # argparse's nargs="+" gives at least one path
    task, limit, unit = first
    return task, limit, unit, runs
