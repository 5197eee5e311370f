"""Collect real QLoRA trials into a JSON Lines file: the data of a surrogate benchmark.

Why: comparing tuners on real fine-tunes costs ~25 s a trial; a surrogate fitted on a
fixed set of real trials (as YAHPO Gym and LCBench do) answers in microseconds. The
trials are space-filling (scrambled Sobol points over the run config's search space)
and each one is fully determined by its index (config and training seed), so a killed
collection resumes to exactly what an uninterrupted one would have written, and
machines can share the work by index ranges (``--start/--stop``).

    python experiments/collect_qlora_trials.py [--config experiments/smollm2_pydoc.yaml]
        [--target 500] [--start I] [--stop J] [--data-file PATH] [--eval-every 2]
        [--sample-seed 0] [--threads N] [--model PATH] [--quick]

The file (``evobench.collect.data_file``): a header line naming the collection (a hash of
what makes trials comparable; the command refuses, exit 2, to extend a file with another),
then one line per finished trial, in order of completion (``evobench.collect.loop``).
Sampling and training seeds: ``evobench.collect.plan``. Reading it::

    rows = [json.loads(line) for line in open(path)]
    header, trials = rows[0], rows[1:]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from evo.trial import ConfigError
from evobench.collect.data_file import header_for, open_data_file
from evobench.collect.loop import collect
from evobench.collect.plan import load_plan
from evobench.paths import DATA_DIR, EXPERIMENTS

DEFAULT_CONFIG = EXPERIMENTS / "smollm2_pydoc.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="run config: space, fixed, budget, fitness")
    p.add_argument(
        "--data-file", type=Path, help="the JSONL to extend (default experiments/data/<config>_trials.jsonl)"
    )
    p.add_argument("--target", type=int, default=500, help="collect indices up to this one (exclusive)")
    p.add_argument("--start", type=int, default=0, help="first index of this machine's range")
    p.add_argument("--stop", type=int, help="end of this machine's range (default --target)")
    p.add_argument("--eval-every", type=int, default=2, help="optimizer steps between validation points")
    p.add_argument("--sample-seed", type=int, default=0, help="Sobol scrambling and training seeds")
    p.add_argument("--threads", type=int, help="set OMP/MKL_NUM_THREADS for the training worker")
    p.add_argument("--model", help="override fitness.model (a local directory or .gguf file)")
    p.add_argument("--quick", action="store_true", help="tiny budget and validation set, CPU (for tests)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, fitness: Any = None) -> int:
    """Run the command; ``fitness`` replaces the one the config describes (the caller closes it)."""
    options = parse_args(argv)
    if options.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(options.threads)  # inherited by the spawned training worker
    path = options.data_file or DATA_DIR / f"{Path(options.config).stem}_trials.jsonl"
    stop = options.target if options.stop is None else min(options.stop, options.target)
    own = fitness is None
    try:
        plan = load_plan(options)
        if own:
            from fitness import make_fitness

            fitness = make_fitness(plan.fitness_spec)
        header = header_for(plan, fitness)
        done = open_data_file(path, header)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    todo = [i for i in range(options.start, stop) if i not in done]
    print(
        f"{path}: collection {header['collection']}, indices {options.start}..{stop - 1}: "
        f"{len(done)} in the file, {len(todo)} to go",
        flush=True,
    )
    try:
        collect(plan, fitness, path, todo, header)
    finally:
        if own:
            fitness.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
