"""Optimizer quality on BBOB functions: our GA against random search and Optuna.

Every method gets the same number of evaluations of the same problems. A BBOB
function (from the ``ioh`` package) is put behind a mixed search space of the kinds a
QLoRA search has: plain floats, log-scaled floats, integers, nominal categoricals and
ordered choices (``evobench.tasks.bbob``). The objective is the precision
``f(x) - f(x*)``, minimised; the tables show its log10.

Methods (``evobench.methods.bbob``): ``ga`` (``evo.evolve`` with ``surrogate: none``, i.e.
plain evolution, the engine before surrogates), ``ga+tpe`` (``surrogate: tpe``), both with
population 10 and otherwise the settings of that time; random search; Optuna TPE and Optuna
NSGA-II, both with their defaults. Optuna's TPE + Hyperband pruner is left out: BBOB
functions have no learning curve to prune on, and an invented one would decide the
outcome.

Prints, per problem, the median and interquartile range of the best value at several
budget checkpoints and the evaluations each method needs to reach a target (the median
value of Optuna TPE at ``--target-at`` evaluations, 100), then a summary over all
problems; writes an anytime plot. Runs go on to ``--budget`` (200) so that a method
slower than TPE still gets a number.

    pip install -e '.[bench]'
    python experiments/benchmark_bbob.py --first-seed 100 --plot experiments/results/bbob_mixed.png  # ~3 min
    python experiments/benchmark_bbob.py --quick --plot /tmp/bbob.png   # ~15 s
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from evobench.methods.bbob import EXTRA_METHODS, METHODS, one_run
from evobench.plots import plot_bbob
from evobench.reports.bbob import report
from evobench.tasks.bbob import BBOB_NAMES, DIMENSIONS, FUNCTIONS, KINDS
from fitness.qlora.worker.lifeline import die_with_parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 functions, 5 dimensions, 3 seeds, 60 evaluations")
    parser.add_argument("--functions", type=int, nargs="+", default=list(FUNCTIONS), choices=list(BBOB_NAMES))
    parser.add_argument("--dims", type=int, nargs="+", default=list(DIMENSIONS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seeds (and BBOB instances) first-seed .. first-seed + seeds - 1; tune on others",
    )
    parser.add_argument("--budget", type=int, default=200, help="evaluations per run")
    parser.add_argument(
        "--target-at",
        type=int,
        default=100,
        help="the budget compared: ranks, wins and the target (optuna-tpe's median there)",
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS + EXTRA_METHODS))
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    parser.add_argument("--plot", help="write the anytime plot (PNG) here")
    args = parser.parse_args(argv)
    if args.quick:
        args.functions, args.dims, args.seeds, args.budget, args.target_at = [1, 15], [5], 3, 60, 30
    args.target_at = min(args.target_at, args.budget)
    problems = [(f, d) for f in args.functions for d in args.dims]
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    tasks = [(m, f, d, s, args.budget) for f, d in problems for m in args.methods for s in seeds]
    t0 = time.perf_counter()
    curves: dict = {}
    seconds: dict[str, float] = {m: 0.0 for m in args.methods}
    with ProcessPoolExecutor(max_workers=args.jobs, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        for key, curve, spent in pool.map(one_run, tasks, chunksize=4):
            method, function, dim, seed = key
            curves[method, function, dim, seed - args.first_seed] = np.array(curve)
            seconds[key[0]] += spent
    print(
        f"BBOB on a mixed space ({', '.join(KINDS)} genes): {len(problems)} problems x {args.seeds} seeds x "
        f"{args.budget} evaluations, {time.perf_counter() - t0:.0f} s wall on {args.jobs} processes"
    )
    print(
        "seconds per run (method overhead): "
        + ", ".join(f"{m} {seconds[m] / (len(problems) * args.seeds):.2f}" for m in args.methods)
    )
    report(curves, args.methods, problems, args.seeds, args.budget, args.target_at)
    if args.plot:
        plot_bbob(curves, args.methods, problems, args.seeds, args.plot)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
