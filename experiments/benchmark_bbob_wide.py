"""All 24 BBOB functions in 2, 5, 10 and 20 dimensions: our strategies against Optuna TPE and random.

The problems, methods and mixed encoding are those of ``benchmark_bbob.py``; this adds
breadth, a split and statistics. Seeds (and with them the BBOB instances, which shift
and rotate each function) come in two disjoint splits: ``dev`` (seeds 0..) is where
settings may be tuned, ``report`` (seeds 1000..) is what the README shows and what no
setting was chosen on. Every run goes to ``--budget`` evaluations; the budgets compared
(50, 100, 200) are read off its best-so-far curve.

At each compared budget B and for each problem: the target is the median over seeds of
Optuna TPE's best after B evaluations; a method's "budget to TPE's result" is the median
over seeds of the evaluations it needs to reach that target, as a multiple of B (a method
that never reaches it within ``--budget`` counts as beyond). A win or a loss against a
peer is a two-sided Mann-Whitney U test at p < 0.05 on the best values after B
evaluations; everything else is a tie.

Runs are appended to ``--results`` (JSON Lines) as they finish, so a stopped benchmark
resumes where it was and a report is a re-read:

    pip install -e '.[bench]'
    python experiments/benchmark_bbob_wide.py --split dev --seeds 5 --methods default optuna-tpe random
    python experiments/benchmark_bbob_wide.py --split report --seeds 15 --table experiments/results/bbob_wide.md
    python experiments/benchmark_bbob_wide.py --quick     # 2 functions x 2 dimensions x 3 seeds, ~20 s
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from evobench.curves import load, run_missing
from evobench.methods.bbob import EXTRA_METHODS, METHODS
from evobench.reports.bbob_wide import BUDGETS, RANDOM, REFERENCE, problem_rows, summary, table
from evobench.tasks.bbob import BBOB_NAMES

SPLITS = {"dev": 0, "report": 1000}  # first seed of each split; instance = seed + 1
DIMENSIONS = (2, 5, 10, 20)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=list(SPLITS), default="report")
    parser.add_argument("--seeds", type=int, default=15)
    parser.add_argument("--functions", type=int, nargs="+", default=list(BBOB_NAMES), choices=list(BBOB_NAMES))
    parser.add_argument("--dims", type=int, nargs="+", default=list(DIMENSIONS))
    parser.add_argument("--budget", type=int, default=max(BUDGETS))
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["default", REFERENCE, RANDOM],
        choices=list(METHODS + EXTRA_METHODS),
        help="methods to run (those in --results already are skipped); the report shows every method of the file",
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--results", type=Path, help="JSON Lines of finished runs (default: per split, in /tmp)")
    parser.add_argument("--table", type=Path, help="write the per-problem table (Markdown) here")
    parser.add_argument("--quick", action="store_true", help="f1 and f15 in 2 and 5 dimensions, 3 seeds")
    args = parser.parse_args(argv)
    if args.quick:
        args.functions, args.dims, args.seeds = [1, 15], [2, 5], 3
    if args.budget < max(BUDGETS):
        raise SystemExit(f"--budget: at least {max(BUDGETS)}, the largest budget compared")
    results = args.results or Path(f"/tmp/bbob_wide_{args.split}.jsonl")
    seeds = list(range(SPLITS[args.split], SPLITS[args.split] + args.seeds))
    problems = [(f, d) for f in args.functions for d in args.dims]
    t0 = time.perf_counter()
    run_missing(
        results, [(m, f, d, s) for f, d in problems for s in seeds for m in args.methods], args.budget, args.jobs
    )
    runs = load(results, args.budget)
    # the report: every method of the file, with TPE and random as references (run by this or another call)
    methods = [m for m in dict.fromkeys([*args.methods, *(k[0] for k in runs)]) if m not in (REFERENCE, RANDOM)]
    methods += [REFERENCE, RANDOM]
    missing = [k for k in ((m, f, d, s) for f, d in problems for s in seeds for m in methods) if k not in runs]
    if missing:
        raise SystemExit(f"{results}: {len(missing)} runs missing for the report, e.g. {missing[0]}; run those methods")
    print(
        f"BBOB wide, split {args.split} (seeds {seeds[0]}..{seeds[-1]}): {len(args.functions)} functions x "
        f"dims {args.dims} = {len(problems)} problems, {len(seeds)} seeds, {args.budget} evaluations a run; "
        f"{time.perf_counter() - t0:.0f} s; runs in {results}"
    )
    rows = list(problem_rows(runs, methods, problems, seeds))
    summary(rows, methods, args.budget)
    if args.table:
        table(rows, methods, args.table)
        print(f"\nper-problem table: {args.table}")


if __name__ == "__main__":
    main()
