"""One run on a given executor, measured: throughput, worker utilisation and the scheduling
overhead per trial, for trials that sleep a known time (the synthetic fitness's ``duration``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from evo import RunStore, parse_config, start_run
from evo.trial import Budget, Trial
from fitness.synthetic import SyntheticFitness


def run_once(raw: dict, executor: Any, run_dir: Path) -> dict[str, float]:
    """Trials, wall seconds, trials per hour, utilisation (time in trials / (capacity x wall))
    and overhead (driver-measured trial time minus the trial's own sleep, ms)."""
    config = parse_config(raw)
    fitness = SyntheticFitness.from_spec(config.fitness)
    t0 = time.perf_counter()
    start_run(config, fitness, run_dir, executor=executor)
    wall = time.perf_counter() - t0
    with RunStore.open(run_dir) as store:
        trials = store.trials()
    slept = [_slept(fitness, t, config.budget) for t in trials]
    return {
        "trials": len(trials),
        "wall": wall,
        "per_hour": len(trials) / wall * 3600,
        "utilisation": sum(slept) / (executor.capacity * wall),
        "overhead_ms": 1000 * sum(t.duration - s for t, s in zip(trials, slept)) / len(trials),
    }


def _slept(fitness: SyntheticFitness, trial: Any, budget: Budget) -> float:
    """The trial's own sleep: the whole-budget duration times the share of steps it trained
    (a diverged trial stops early and sleeps less)."""
    whole = fitness.duration(Trial(trial.id, trial.config, budget, trial.seed))
    steps, start, total = (trial.metrics.get(k) for k in ("steps", "start_step", "budget_steps"))
    return whole * max(steps - (start or 0), 1) / total if steps and total else whole
