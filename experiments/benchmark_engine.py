"""How much time the engine itself adds per evaluation (store, selection, variation).

Runs the synthetic fitness, which answers in microseconds, so nearly all the time
measured is the engine's. Prints a table: mean milliseconds per evaluation spent in
each part, and the evaluation count with and without the result cache.

    python experiments/benchmark_engine.py [--generations 10] [--population 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

from evo import _breeding as breeding
from evo._api import start_run
from evo.config import parse_config
from evo.storage import RunStore
from evo.strategies._context import RunContext
from fitness.synthetic import SyntheticFitness

ROOT = Path(__file__).resolve().parents[1]


def timed(table, name, fn):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            table[name] += time.perf_counter() - t0

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--population", type=int, default=16)
    args = parser.parse_args()
    raw = yaml.safe_load((ROOT / "experiments/synthetic.yaml").read_text())
    raw["evolution"].update(generations=args.generations, population_size=args.population)
    config = parse_config(raw)
    fitness = SyntheticFitness.from_spec(config.fitness)

    spent: dict[str, float] = defaultdict(float)
    calls = []
    original_evaluate = fitness.evaluate
    fitness.evaluate = timed(spent, "fitness (synthetic)", lambda t: calls.append(t) or original_evaluate(t))
    patches = [
        (RunStore, "start_trial", "store writes"),
        (RunStore, "finish_trial", "store writes"),
        (RunStore, "find_reusable", "cache look-ups"),
        (RunStore, "add_individuals", "store writes"),
        (RunStore, "finish_generation", "store writes"),
        (breeding, "offspring", "selection + variation"),
        (breeding, "initial_members", "selection + variation"),
        (RunContext, "survivors", "selection + variation"),
    ]
    saved = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in patches]
    for owner, attr, name in patches:
        setattr(owner, attr, timed(spent, name, getattr(owner, attr)))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            result = start_run(config, fitness, Path(tmp) / "run")
            total = time.perf_counter() - t0
    finally:
        for owner, attr, fn in saved:
            setattr(owner, attr, fn)

    individuals = sum(row["evals"] + row["cached"] for row in result.history) + (1 if config.baseline else 0)
    evaluations = len(calls)
    print(f"synthetic run: {args.generations} generations x {args.population} individuals, 1 baseline")
    print(f"{'part':<24}{'total s':>10}{'ms / evaluation':>18}")
    for name in sorted(spent):
        print(f"{name:<24}{spent[name]:>10.3f}{1000 * spent[name] / evaluations:>18.3f}")
    engine = total - spent["fitness (synthetic)"]
    print(f"{'engine, all of it':<24}{engine:>10.3f}{1000 * engine / evaluations:>18.3f}")
    print(f"{'wall':<24}{total:>10.3f}{1000 * total / evaluations:>18.3f}")
    print(
        f"individuals evaluated: {individuals}; trainings run: {evaluations}; "
        f"reused from the cache: {individuals - evaluations}"
    )


if __name__ == "__main__":
    main()
