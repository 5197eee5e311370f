"""benchmark_fidelity.py's tables: the best validation perplexity at shares of the token budget,
the share each method needs to reach the plain GA's and Optuna TPE's median final result, the
wall time per run, and with few seeds every run's final best, seed by seed."""

from __future__ import annotations

import math

import numpy as np

from evobench.ledger import best_at
from evobench.stats import budget_to_reach, lower_median

CHECKPOINTS = (0.25, 0.5, 0.75, 1.0)


def num(x: float) -> str:
    return f"{x:.3f}" if math.isfinite(x) else "-"


def report(runs: dict[str, list], limit: int, unit: int, task_name: str) -> None:
    """``runs``: ledgers (or saved ones) by method label, one per seed."""
    methods = list(runs)
    seeds = len(next(iter(runs.values())))
    print(
        f"\nbest validation perplexity (median [25%, 75%] over {seeds} seeds) at a share of the budget "
        f"of {limit // unit} whole trials = {limit:,} training tokens; task {task_name}"
    )
    width = max(15, *(len(m) + 1 for m in methods))
    header = f"  {'method':<{width}}" + "".join(f"{f'{c:.0%}':>22}" for c in CHECKPOINTS)
    finals = {m: [best_at(ledger.points, limit) for ledger in runs[m]] for m in methods}
    targets = {ref: lower_median(finals[ref]) for ref in ("ga", "optuna-tpe") if ref in runs}
    header += "".join(f"{'to ' + ref + ' final':>20}" for ref in targets) + f"{'wall s/run':>12}"
    print(header)
    for m in methods:
        cells = []
        for c in CHECKPOINTS:
            values = [best_at(ledger.points, c * limit) for ledger in runs[m]]
            q1, med, q3 = np.percentile(values, [25, 50, 75], method="lower")  # "lower": no arithmetic on inf
            cells.append(f"{num(med):>8} [{num(q1)},{num(q3)}]")
        reach = []
        for target in targets.values():
            spent = lower_median([budget_to_reach(ledger.points, target) for ledger in runs[m]])
            reach.append(f"{spent / limit:.2f}x" if math.isfinite(spent) else "not reached")
        wall = float(np.median([ledger.points[-1][2] if ledger.points else 0.0 for ledger in runs[m]]))
        print(
            f"  {m:<{width}}"
            + "".join(f"{c:>22}" for c in cells)
            + "".join(f"{r:>20}" for r in reach)
            + f"{wall:>12.1f}"
        )
    print(
        "\n'to X final': the median share of the budget (training tokens) a method needs to reach the median\n"
        "final result of X ('not reached' within the budget); 1.00x = the whole budget."
    )
    if seeds <= 10 and all(ledger.seed is not None for v in runs.values() for ledger in v):
        per_seed(runs, limit, width)


def per_seed(runs: dict[str, list], limit: int, width: int) -> None:
    """A few seeds (real trials): every run's final best, seed by seed, so no median hides one."""
    seeds = sorted({ledger.seed for v in runs.values() for ledger in v})
    print("\nfinal best validation perplexity, seed by seed (- : that run is missing)")
    print(f"  {'method':<{width}}" + "".join(f"{s:>10}" for s in seeds))
    for m, ledgers in runs.items():
        by_seed = {ledger.seed: best_at(ledger.points, limit) for ledger in ledgers}
        print(f"  {m:<{width}}" + "".join(f"{num(by_seed.get(s, math.inf)):>10}" for s in seeds))
