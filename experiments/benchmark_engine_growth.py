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
import tempfile
import time
from pathlib import Path

from evo import RunStore, parse_config, start_run
from evobench.engine import STRATEGIES, engine_ms_per_evaluation
from fitness.synthetic import SyntheticFitness


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
