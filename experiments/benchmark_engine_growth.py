"""The engine's own cost per evaluation as a run grows, for each strategy.

Runs the synthetic fitness (microseconds a trial) with one local worker until the
run holds ``--trials`` trials, then reads the trials' start and finish times from the
store: over a window of trials, the engine's time per evaluation is the wall time
between consecutive finishes minus the time spent inside the fitness. Each mark reports
the median of five windows just before it, so a burst of load on a shared machine does
not pass for growth. Prints one row per strategy with the cost around 1k, 5k, 10k and
20k trials already in the run.

    python experiments/benchmark_engine_growth.py [--trials 20000] [--window 200]
    python experiments/benchmark_engine_growth.py --quick   # seconds, for the tests
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from evo import RunStore, parse_config, start_run
from fitness.synthetic import SyntheticFitness

ROOT = Path(__file__).resolve().parents[1]
POPULATION = 16


def _base(trials: int, per_generation: int, **evolution: Any) -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "experiments" / "synthetic.yaml").read_text())
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
    """Engine milliseconds per evaluation at each mark: the median over five windows of
    ``window`` trials ending there."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--strategies", nargs="+", choices=list(STRATEGIES), default=list(STRATEGIES))
    parser.add_argument("--quick", action="store_true", help="300 trials, marks at 150 and 300")
    args = parser.parse_args()
    marks = [1_000, 5_000, 10_000, 20_000]
    if args.quick:
        args.trials, args.window, marks = 300, 20, [150, 300]
    marks = [m for m in marks if m <= args.trials]
    print(f"engine ms per evaluation (median of 5 windows of {args.window} trials) at N trials already in the run")
    print(f"{'strategy':<28}" + "".join(f"{f'N={m:,}':>11}" for m in marks) + f"{'wall s':>9}{'trials':>8}{'best':>9}")
    for name in args.strategies:
        raw = STRATEGIES[name](args.trials)
        config = parse_config(raw)
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            tick = time.perf_counter()
            result = start_run(config, SyntheticFitness.from_spec(config.fitness), run_dir)
            wall = time.perf_counter() - tick
            costs = engine_ms_per_evaluation(run_dir, marks, args.window)
            with RunStore.open(run_dir) as store:
                count = sum(1 for t in store.trials() if t.generation >= 0)
        cells = "".join(f"{costs[m]:>11.2f}" if m in costs else f"{'-':>11}" for m in marks)
        best = result.best_trials[0].values["val_perplexity"] if result.best_trials else float("nan")
        print(f"{name:<28}{cells}{wall:>9.1f}{count:>8}{best:>9.4f}", flush=True)


if __name__ == "__main__":
    main()
