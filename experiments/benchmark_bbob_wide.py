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
import json
import math
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from benchmark_bbob import BBOB_NAMES, EXTRA_METHODS, METHODS, one_run
from scipy.stats import mannwhitneyu

SPLITS = {"dev": 0, "report": 1000}  # first seed of each split; instance = seed + 1
DIMENSIONS = (2, 5, 10, 20)
BUDGETS = (50, 100, 200)
REFERENCE, RANDOM = "optuna-tpe", "random"
ALPHA = 0.05
Key = tuple[str, int, int, int]  # method, function, dimension, seed


# -- the runs, kept on disk ---------------------------------------------------------------
def compress(curve: Iterable[float]) -> list[list[float]]:
    """A best-so-far curve as the evaluations where it improved: ``[[n, log10 value], ...]``."""
    out: list[list[float]] = []
    for n, value in enumerate(curve, start=1):
        if not out or math.log10(value) < out[-1][1]:
            out.append([n, round(math.log10(value), 6)])
    return out


def expand(steps: list[list[float]], budget: int) -> np.ndarray:
    """The log10 best-so-far after each of ``budget`` evaluations, from :func:`compress`'s output."""
    curve = np.empty(budget)
    for (n, value), nxt in zip(steps, steps[1:] + [[budget + 1, 0.0]]):
        curve[int(n) - 1 : min(int(nxt[0]) - 1, budget)] = value
    return curve


def load(path: Path, budget: int) -> dict[Key, np.ndarray]:
    """The runs recorded in ``path`` at this budget; a torn last line (a killed run) is skipped."""
    runs: dict[Key, np.ndarray] = {}
    if not path.exists():
        return runs
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row["budget"] == budget:
            runs[row["method"], row["function"], row["dim"], row["seed"]] = expand(row["best"], budget)
    return runs


def run_missing(path: Path, keys: list[Key], budget: int, jobs: int) -> None:
    """Runs every key not yet in ``path``, appending each as it finishes."""
    done = load(path, budget)
    todo = [k for k in keys if k not in done]
    if not todo:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs) as pool, path.open("a") as out:
        if path.stat().st_size and not path.read_text().endswith("\n"):
            out.write("\n")  # a line torn by a kill stays alone on its line
        futures = [pool.submit(one_run, (m, f, d, s, budget)) for m, f, d, s in todo]
        for i, future in enumerate(as_completed(futures), start=1):
            (method, function, dim, seed), curve, seconds = future.result()
            row = {"method": method, "function": function, "dim": dim, "seed": seed, "budget": budget}
            out.write(json.dumps({**row, "seconds": round(seconds, 3), "best": compress(curve)}) + "\n")
            out.flush()
            if i % 100 == 0 or i == len(todo):
                print(f"  {i}/{len(todo)} runs, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


# -- the statistics -----------------------------------------------------------------------
def to_reach(curves: np.ndarray, target: float) -> float:
    """Median over seeds of the evaluations until the best reaches ``target`` (inf: not reached)."""
    hits = [float(np.argmax(c <= target) + 1) if (c <= target).any() else math.inf for c in curves]
    return float(np.percentile(hits, 50, method="lower"))


def compare(ours: np.ndarray, theirs: np.ndarray) -> int:
    """+1 a significant win (lower values), -1 a significant loss, 0 a tie."""
    if np.array_equal(np.sort(ours), np.sort(theirs)):
        return 0
    p = mannwhitneyu(ours, theirs, alternative="two-sided").pvalue
    if p >= ALPHA:
        return 0
    return 1 if np.median(ours) < np.median(theirs) else -1


def problem_rows(runs: dict[Key, np.ndarray], methods: list[str], problems: list[tuple[int, int]], seeds: list[int]):
    """Per problem and compared budget: each method's median, budget to TPE's target, and verdicts."""
    for f, d in problems:
        curves = {m: np.array([runs[m, f, d, s] for s in seeds]) for m in methods}
        for b in BUDGETS:
            finals = {m: curves[m][:, b - 1] for m in methods}
            target = float(np.median(finals[REFERENCE]))
            yield (
                f,
                d,
                b,
                {
                    m: {
                        "median": float(np.median(finals[m])),
                        "to_target": to_reach(curves[m], target + 1e-12) / b,
                        "vs_tpe": compare(finals[m], finals[REFERENCE]),
                        "vs_random": compare(finals[m], finals[RANDOM]),
                    }
                    for m in methods
                },
            )


def summary(rows: list, methods: list[str], budget: int) -> None:
    """One line per method and compared budget, over all problems."""
    n = len({(f, d) for f, d, _, _ in rows})
    print(f"\nover {n} problems; 'to TPE' = median over problems of the evaluations needed to reach TPE's median")
    print("result at B, as a multiple of B; W/T/L = significant wins, ties, losses (Mann-Whitney, p < 0.05)\n")
    print("| method | B | to TPE's result | reached | vs TPE W/T/L | vs random W/T/L | worst vs random |")
    print("|---|---|---|---|---|---|---|")
    for b in BUDGETS:
        at = [(f, d, cells) for f, d, bb, cells in rows if bb == b]
        for m in methods:
            ratios = [cells[m]["to_target"] for _, _, cells in at]
            median = float(np.percentile(ratios, 50, method="lower"))
            shown = f"{median:.2f}x" if math.isfinite(median) else f"> {budget / b:.0f}x"
            wtl = {
                k: [sum(cells[m][k] == v for _, _, cells in at) for v in (1, 0, -1)] for k in ("vs_tpe", "vs_random")
            }
            worst = max(
                ((cells[m]["median"] - cells[RANDOM]["median"], f"f{f} d{d}") for f, d, cells in at),
                default=(0.0, "-"),
            )
            print(
                f"| {m} | {b} | {shown} | {sum(math.isfinite(r) for r in ratios)}/{len(at)} "
                f"| {'/'.join(map(str, wtl['vs_tpe']))} | {'/'.join(map(str, wtl['vs_random']))} "
                f"| {worst[0]:+.2f} ({worst[1]}) |"
            )


def table(rows: list, methods: list[str], path: Path) -> None:
    """Per problem at each budget: median log10 precision and a verdict against TPE and random."""
    mark = {1: "+", 0: "=", -1: "-"}
    lines = [
        "Median log10 precision over seeds (lower is better); marks: against TPE, then against random",
        "(+ significantly better, = tie, - significantly worse; Mann-Whitney p < 0.05).",
        "",
        "| problem | B | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for f, d, b, cells in rows:
        row = [f"{cells[m]['median']:.2f} {mark[cells[m]['vs_tpe']]}{mark[cells[m]['vs_random']]}" for m in methods]
        lines.append(f"| f{f} {BBOB_NAMES[f]}, d={d} | {b} | " + " | ".join(row) + " |")
    path.write_text("\n".join(lines) + "\n")


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
