"""The engine's own cost, measured from outside: what a run takes beyond its fitness.

The synthetic fitness answers in microseconds, so nearly all of a run's time is the
engine's. Two measures, both through the public API: :func:`timed_run` times the fitness
and the public :class:`evo.RunStore` methods a run calls (writes and cache look-ups) and
leaves the rest (selection, variation, surrogate screening, bookkeeping) as the remainder;
:func:`engine_ms_per_evaluation` reads the trials' stored start and finish times.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evo import RunStore, start_run
from evo.config import RunConfig
from evobench.paths import run_config
from fitness.synthetic import SyntheticFitness

FITNESS = "fitness (synthetic)"
STORE_PARTS = {  # RunStore method -> the part of the table it counts towards
    "start_trial": "store writes",
    "finish_trial": "store writes",
    "add_individuals": "store writes",
    "finish_generation": "store writes",
    "find_reusable": "cache look-ups",
}
POPULATION = 16  # of the growth benchmark's runs


def _timed(table: dict[str, float], name: str, fn: Callable) -> Callable:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            table[name] += time.perf_counter() - t0

    return wrapper


def timed_run(config: RunConfig, run_dir: Path) -> tuple[dict[str, float], float, int, Any]:
    """Run ``config`` on the synthetic fitness in ``run_dir``: seconds by part, wall seconds,
    trainings run, and the run's result. The store's methods are timed on the class (the run
    builds its own store) and put back afterwards."""
    fitness = SyntheticFitness.from_spec(config.fitness)
    spent: dict[str, float] = defaultdict(float)
    calls: list[Any] = []
    evaluate = fitness.evaluate
    fitness.evaluate = _timed(spent, FITNESS, lambda t: calls.append(t) or evaluate(t))  # type: ignore[method-assign]
    saved = {name: getattr(RunStore, name) for name in STORE_PARTS}
    for name, part in STORE_PARTS.items():
        setattr(RunStore, name, _timed(spent, part, saved[name]))
    try:
        t0 = time.perf_counter()
        result = start_run(config, fitness, run_dir)
        wall = time.perf_counter() - t0
    finally:
        for name, fn in saved.items():
            setattr(RunStore, name, fn)
    return dict(spent), wall, len(calls), result


# -- growth: the cost per evaluation as a run holds more trials ----------------------------------
def _base(trials: int, per_generation: int, **evolution: Any) -> dict[str, Any]:
    raw = run_config("synthetic")
    generations = max(1, math.ceil((trials - POPULATION) / per_generation))
    raw["evolution"].update(population_size=POPULATION, generations=generations, **evolution)
    return raw


def _pbt(trials: int) -> dict[str, Any]:
    intervals = 40
    raw = _base(trials, 1, mode="pbt", pbt={"interval": 1 / intervals, "quantile": 0.25})
    raw["evolution"].update(population_size=max(2, math.ceil(trials / intervals)))
    raw["evolution"].pop("generations")
    raw["evolution"].pop("immigrants")
    return raw


# strategy -> run config holding about ``trials`` trials
STRATEGIES: dict[str, Callable[[int], dict[str, Any]]] = {
    "generational": lambda n: _base(n, POPULATION, mode="generational"),
    "generational, no surrogate": lambda n: _base(n, POPULATION, mode="generational", surrogate="none"),
    "steady-state (default)": lambda n: _base(n, POPULATION, mode="steady_state"),
    "multi-fidelity": lambda n: _base(n, POPULATION + 6 + 2, multi_fidelity={"eta": 3, "min_fidelity": 1 / 9}),
    "pbt": _pbt,
}


def engine_ms_per_evaluation(run_dir: Path, marks: list[int], window: int) -> dict[int, float]:
    """Engine milliseconds per evaluation at each mark: over a window of trials, the wall time
    between consecutive finishes minus the time inside the fitness; the median over five
    windows of ``window`` trials ending there, so a burst of load does not pass for growth."""
    with RunStore.open(run_dir) as store:
        trials = [t for t in store.trials() if t.finished_at is not None and t.generation >= 0]
    out = {}
    for mark in marks:
        if mark > len(trials) or mark <= 5 * window:
            continue
        costs = []
        for end in range(mark - 4 * window, mark + 1, window):
            chunk = trials[end - window : end]
            wall = chunk[-1].finished_at - trials[end - window - 1].finished_at
            inside = sum(t.duration or 0.0 for t in chunk)
            costs.append(1000 * (wall - inside) / window)
        out[mark] = statistics.median(costs)
    return out
