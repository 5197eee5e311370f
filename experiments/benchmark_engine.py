"""How much time the engine itself adds per evaluation (store, selection, variation).

Runs the synthetic fitness, which answers in microseconds, so nearly all the time
measured is the engine's. Prints a table: mean milliseconds per evaluation spent in
each part, and the evaluation count with and without the result cache. Measured from
outside, through the public API (``evobench.engine``): the fitness and the run store's
writes and look-ups are timed, and the rest of the engine (selection, variation,
surrogate screening, bookkeeping) is what remains of the wall time.

    python experiments/benchmark_engine.py [--generations 10] [--population 16]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from evo import parse_config
from evobench.engine import FITNESS, timed_run
from evobench.paths import run_config

REST = "breeding and the rest"  # selection, variation, surrogate screening, bookkeeping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--population", type=int, default=16)
    args = parser.parse_args()
    raw = run_config("synthetic")
    raw["evolution"].update(generations=args.generations, population_size=args.population)
    config = parse_config(raw)
    with tempfile.TemporaryDirectory() as tmp:
        spent, total, evaluations, result = timed_run(config, Path(tmp) / "run")
    spent[REST] = total - sum(spent.values())

    individuals = sum(row["evals"] + row["cached"] for row in result.history) + (1 if config.baseline else 0)
    print(f"synthetic run: {args.generations} generations x {args.population} individuals, 1 baseline")
    print(f"{'part':<28}{'total s':>10}{'ms / evaluation':>18}")
    for name in sorted(spent):
        print(f"{name:<28}{spent[name]:>10.3f}{1000 * spent[name] / evaluations:>18.3f}")
    engine = total - spent[FITNESS]
    print(f"{'engine, all of it':<28}{engine:>10.3f}{1000 * engine / evaluations:>18.3f}")
    print(f"{'wall':<28}{total:>10.3f}{1000 * total / evaluations:>18.3f}")
    print(
        f"individuals evaluated: {individuals}; trainings run: {evaluations}; "
        f"reused from the cache: {individuals - evaluations}"
    )


if __name__ == "__main__":
    main()
