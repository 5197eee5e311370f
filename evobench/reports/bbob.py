"""benchmark_bbob.py's tables: per problem, the best value at budget checkpoints and the
evaluations to a target; then a summary over all problems and a headline against TPE."""

from __future__ import annotations

import math

import numpy as np

from evobench.stats import median_to_reach
from evobench.tasks.bbob import BBOB_NAMES


def fmt_budget(x: float, budget: int) -> str:
    return f">{budget}" if not math.isfinite(x) else f"{x:.0f}"


def report(
    curves: dict, methods: list[str], problems: list[tuple[int, int]], seeds: int, budget: int, target_at: int
) -> dict:
    """Prints the tables; returns per-method summary numbers. Ranks and wins compare medians at ``target_at``."""
    checkpoints = sorted({c for c in (10, 25, 50, 100, 200) if c < budget} | {target_at, budget})
    summary = {m: {"to_target": [], "rank": [], "beats_random": 0, "beats_tpe": 0} for m in methods}
    reference = "optuna-tpe" if "optuna-tpe" in methods else methods[0]
    print(f"\nlog10 precision of the best of n evaluations: median [25%, 75%] over {seeds} seeds (lower is better);")
    print(
        f"'to target' = median evaluations to reach the median value of {reference} at n={target_at} "
        f"(>{budget}: not reached)\n"
    )
    for function, dim in problems:
        logs = {m: np.log10(np.array([curves[m, function, dim, s] for s in range(seeds)])) for m in methods}
        target = float(np.median(logs[reference][:, target_at - 1]))
        print(f"f{function} {BBOB_NAMES[function]}, {dim} dimensions (target {target:.2f})")
        print(f"  {'method':<14}" + "".join(f"{'n=' + str(c):>21}" for c in checkpoints) + f"{'to target':>11}")
        finals = {m: float(np.median(logs[m][:, target_at - 1])) for m in methods}
        order = sorted(methods, key=lambda m: finals[m])
        for m in methods:
            cells = []
            for c in checkpoints:
                q1, med, q3 = np.percentile(logs[m][:, c - 1], [25, 50, 75])
                cells.append(f"{med:7.2f} [{q1:5.2f},{q3:5.2f}]")
            hit = median_to_reach(logs[m], target + 1e-12)
            print(f"  {m:<14}" + "".join(f"{c:>21}" for c in cells) + f"{fmt_budget(hit, budget):>11}")
            summary[m]["to_target"].append(hit)
            summary[m]["rank"].append(order.index(m) + 1)
            summary[m]["beats_random"] += "random" in finals and finals[m] < finals["random"]
            summary[m]["beats_tpe"] += "optuna-tpe" in finals and finals[m] < finals["optuna-tpe"]
        print()
    print(f"summary over {len(problems)} problems (medians at n={target_at})")
    print(
        f"  {'method':<14}{'mean rank':>10}{'beats random':>14}{'beats tpe':>11}{'reaches target':>16}"
        f"{'median evals to target':>24}"
    )
    for m in methods:
        s = summary[m]
        reached = sum(math.isfinite(h) for h in s["to_target"])
        print(
            f"  {m:<14}{np.mean(s['rank']):>10.2f}{s['beats_random']:>11}/{len(problems):<2}"
            f"{s['beats_tpe']:>8}/{len(problems):<2}{reached:>13}/{len(problems):<2}"
            f"{fmt_budget(float(np.median(s['to_target'])), budget):>24}"
        )
    best = min((m for m in methods if m.startswith("ga")), key=lambda m: np.mean(summary[m]["rank"]), default=None)
    if best and reference == "optuna-tpe":
        ratio = float(np.median(summary[best]["to_target"])) / target_at
        shown = f"{ratio:.2f}" if math.isfinite(ratio) else f"> {budget / target_at:.1f}"
        print(
            f"\nheadline: {best} reaches the median result of optuna-tpe after {target_at} evaluations in "
            f"{shown} x {target_at} evaluations (median over problems)"
        )
    return summary
