"""The median stopping rule's thresholds, kept incrementally, equal the medians computed
from scratch over every curve, whatever order curves arrive in."""

from __future__ import annotations

import bisect
import random

import numpy as np

from evo._pruning import GRID, MedianRule
from evo.config import EarlyStopping
from evo.storage import TrialRecord
from evo.trial import Objective, TrialStatus


def _trial(steps: list[int], values: list[float], budget: int, ok: bool = True) -> TrialRecord:
    return TrialRecord(
        id=0, config={}, generation=0, seed=0, status=TrialStatus.COMPLETE if ok else TrialStatus.PRUNED,
        reason=None, message="", values={}, applied_config=None, started_at=0.0, finished_at=1.0, duration=1.0,
        metrics={"loss_curve": [[s, v] for s, v in zip(steps, values)], "budget_steps": budget},
    )  # fmt: skip


def _from_scratch(curves: list[tuple[list[float], list[float]]], settings: EarlyStopping) -> tuple:
    """The rule as written in its docstring: at every fraction a curve reached (past warmup),
    the median of each curve's latest value at or before it, where enough curves reach it."""
    if len(curves) < settings.min_trials:
        return ()
    out = []
    for point in sorted({f for fractions, _ in curves for f in fractions if f >= settings.warmup}):
        here = []
        for fractions, values in curves:
            i = bisect.bisect_right(fractions, point)
            if fractions[-1] >= point and i > 0:
                here.append(values[i - 1])
        if len(here) >= settings.min_trials:
            out.append((point, float(np.median(here))))
    return tuple(out)


def test_incremental_medians_equal_medians_from_scratch():
    rng = random.Random(4)
    settings = EarlyStopping(min_trials=3, warmup=0.2)
    rule = MedianRule(settings, Objective("loss"))
    for n in range(60):
        budget = rng.choice([8, 16, 30, 100])
        steps = sorted(rng.sample(range(1, budget + 1), rng.randint(1, min(6, budget))))
        rule.add(_trial(steps, [rng.uniform(1, 10) for _ in steps], budget, ok=rng.random() > 0.1))
        assert rule.thresholds() == _from_scratch(rule.curves, settings), f"after {n + 1} trials"
    assert all(0 < f <= 1 and f * GRID == int(f * GRID) for f, _ in rule.thresholds())
