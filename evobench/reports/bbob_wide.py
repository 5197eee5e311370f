"""benchmark_bbob_wide.py's tables: per problem and compared budget B, each method's median,
its budget to TPE's result and its verdicts against TPE and random; then one line per method.

The target at B is the median over seeds of Optuna TPE's best after B evaluations; "to TPE's
result" is the median over seeds of the evaluations a method needs to reach it, as a multiple
of B.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from evobench.curves import Key
from evobench.stats import compare, lower_median, median_to_reach
from evobench.tasks.bbob import BBOB_NAMES

BUDGETS = (50, 100, 200)
REFERENCE, RANDOM = "optuna-tpe", "random"
Row = tuple[int, int, int, dict[str, dict[str, Any]]]  # function, dimension, B, the cells by method


def problem_rows(
    runs: dict[Key, np.ndarray], methods: list[str], problems: list[tuple[int, int]], seeds: list[int]
) -> Iterator[Row]:
    """Per problem and compared budget: each method's median, budget to TPE's target, and verdicts."""
    for f, d in problems:
        curves = {m: np.array([runs[m, f, d, s] for s in seeds]) for m in methods}
        for b in BUDGETS:
            finals = {m: curves[m][:, b - 1] for m in methods}
            target = float(np.median(finals[REFERENCE]))
            cells = {
                m: {
                    "median": float(np.median(finals[m])),
                    "to_target": median_to_reach(curves[m], target + 1e-12) / b,
                    "vs_tpe": compare(finals[m], finals[REFERENCE]),
                    "vs_random": compare(finals[m], finals[RANDOM]),
                }
                for m in methods
            }
            yield f, d, b, cells


def summary(rows: list[Row], methods: list[str], budget: int) -> None:
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
            median = lower_median(ratios)
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


def table(rows: list[Row], methods: list[str], path: Path) -> None:
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
