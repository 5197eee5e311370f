"""The benchmarks' statistics: how soon a method reaches a target, and whether it wins.

"Budget to reach a target" is the budget (evaluations, training tokens) spent when the best
value so far first reaches a target, lower being better; medians over seeds take the lower
middle value, so that a seed that never reached it (inf) needs no arithmetic.
A win or a loss is a two-sided Mann-Whitney U test at p < ``ALPHA``; anything else is a tie.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

ALPHA = 0.05


def budget_to_reach(points: Iterable[Sequence[Any]], target: float) -> float:
    """The budget spent when the best so far first reaches ``target``; inf if it never does.
    ``points``: (budget spent, value or None, ...) in the order they were spent."""
    best = math.inf
    for spent, value, *_ in points:
        if value is not None and value < best:
            best = value
        if best <= target:
            return float(spent)
    return math.inf


def median_to_reach(curves: Iterable[Sequence[float]], target: float) -> float:
    """Median over seeds of the evaluations each best-so-far curve (value after evaluation
    1, 2, ...) needs to reach ``target``."""
    hits = [budget_to_reach(enumerate(np.asarray(c).tolist(), start=1), target) for c in curves]
    return lower_median(hits)


def lower_median(values: Sequence[float]) -> float:
    return float(np.percentile(values, 50, method="lower"))


def compare(ours: np.ndarray, theirs: np.ndarray) -> int:
    """+1 a significant win (lower values), -1 a significant loss, 0 a tie."""
    from scipy.stats import mannwhitneyu

    if np.array_equal(np.sort(ours), np.sort(theirs)):
        return 0
    p = mannwhitneyu(ours, theirs, alternative="two-sided").pvalue
    if p >= ALPHA:
        return 0
    return 1 if np.median(ours) < np.median(theirs) else -1
