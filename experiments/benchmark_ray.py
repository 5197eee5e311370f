"""Parallel evaluation on a local Ray cluster: generational versus steady-state.

Trials are simulated: the synthetic fitness sleeps for a log-normal duration (mean
``--mean`` seconds, sigma ``--spread``), as real trials of mixed configs do. For each
worker count, one actor per worker (fractional CPU shares let many sleeping actors
share this machine) runs a generational and a steady-state run of the same size, and
the table reports:

- trials/h: executed trials per hour of wall-clock time;
- utilisation: time the workers spent in trials / (workers x wall-clock time);
- efficiency: trials/h / (workers x trials/h with one worker, same mode);
- overhead: mean driver-measured trial time minus the trial's own sleep, in ms:
  the scheduling cost per trial (store writes, Ray dispatch, result transfer).

    python experiments/benchmark_ray.py [--workers 1 2 4 8 16 32] [--mean 0.4] [--spread 0.8]
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
from pathlib import Path

import ray

from evo import make_executor
from evo.config import ExecutorSettings, ExecutorType
from evobench.parallel import run_once
from evobench.paths import ROOT, run_config
from fitness.synthetic import SyntheticFitness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--mean", type=float, default=0.4, help="mean trial duration in seconds")
    parser.add_argument("--spread", type=float, default=0.8, help="log-normal sigma of the trial durations")
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--cpus", type=float, default=os.cpu_count(), help="CPUs of the local Ray cluster")
    args = parser.parse_args()

    raw = run_config("synthetic")
    raw.pop("baseline", None)
    raw["fitness"].update(seconds_per_trial=args.mean, duration_spread=args.spread)
    ray.init(
        num_cpus=args.cpus,
        include_dashboard=False,
        logging_level="WARNING",
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    rows, single = [], {}
    try:
        for workers in args.workers:
            factory = functools.partial(SyntheticFitness.from_spec, raw["fitness"])
            settings = ExecutorSettings(type=ExecutorType.RAY, workers=workers, cpus_per_trial=args.cpus / workers)
            executor = make_executor(settings, factory(), factory)
            try:
                for mode in ("generational", "steady_state"):
                    size = max(8, 2 * workers)  # two waves of trials per generation
                    raw["evolution"].update(mode=mode, population_size=size, generations=args.generations)
                    with tempfile.TemporaryDirectory() as tmp:
                        row = run_once(raw, executor, Path(tmp) / "run")
                    single.setdefault(mode, row["per_hour"] / workers)
                    row.update(workers=workers, mode=mode, efficiency=row["per_hour"] / (workers * single[mode]))
                    rows.append(row)
                    print_row(row, header=len(rows) == 1)
            finally:
                executor.close()
    finally:
        ray.shutdown()
    print(
        f"\ntrials: log-normal durations, mean {args.mean}s, sigma {args.spread}; "
        f"population = offspring = max(8, 2 x workers); {args.generations} generations after the initial one; "
        f"{args.cpus:g} CPUs"
    )


def print_row(row: dict, header: bool) -> None:
    if header:
        print(
            f"| {'workers':>7} | {'mode':<12} | {'trials':>6} | {'wall s':>6} | {'trials/h':>8} "
            f"| {'utilisation':>11} | {'efficiency':>10} | {'overhead ms':>11} |"
        )
        print(f"|{'-' * 9}|{'-' * 14}|{'-' * 8}|{'-' * 8}|{'-' * 10}|{'-' * 13}|{'-' * 12}|{'-' * 13}|")
    print(
        f"| {row['workers']:>7} | {row['mode']:<12} | {row['trials']:>6} | {row['wall']:>6.1f} "
        f"| {row['per_hour']:>8.0f} | {row['utilisation']:>11.0%} | {row['efficiency']:>10.0%} "
        f"| {row['overhead_ms']:>11.1f} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
