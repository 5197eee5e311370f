"""Early stopping's thresholds: the median rule's, kept incrementally, equal the medians
computed from scratch over every curve, whatever order curves arrive in; successive halving's
keep the best 1/eta of every trial that reached each rung, bracket by bracket."""

from __future__ import annotations

import bisect
import dataclasses
import math
import random

import numpy as np
import pytest

from evo.config import EarlyStopping, StopRule
from evo.early_stopping._rules import GRID
from evo.storage import TrialRecord
from evo.strategies._context import stopping_rule
from evo.trial import ConfigError, Direction, Objective, TrialStatus


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
    settings = EarlyStopping(rule=StopRule.MEDIAN, min_trials=3, warmup=0.2)
    rule = stopping_rule(settings, Objective("loss"))
    for n in range(60):
        budget = rng.choice([8, 16, 30, 100])
        steps = sorted(rng.sample(range(1, budget + 1), rng.randint(1, min(6, budget))))
        rule.add(_trial(steps, [rng.uniform(1, 10) for _ in steps], budget, ok=rng.random() > 0.1))
        assert rule.thresholds() == _from_scratch(rule.curves, settings), f"after {n + 1} trials"
    assert all(0 < f <= 1 and f * GRID == int(f * GRID) for f, _ in rule.thresholds())


def _signed_kth(values: list[float], k: int) -> float:
    return sorted(values)[k - 1]


def test_halving_keeps_the_best_third_of_every_trial_that_reached_a_rung_stopped_ones_too():
    settings = EarlyStopping(eta=3, min_fidelity=1 / 9, brackets=1)
    rule = stopping_rule(settings, Objective("loss"))
    assert rule.thresholds() == ((round(GRID / 9) / GRID, math.inf), (round(GRID / 3) / GRID, math.inf))
    rng = random.Random(7)
    at_first, at_second = [], []
    for n in range(40):
        budget = 36
        steps = list(range(1, budget + 1)) if n % 5 else list(range(1, 13))  # every fifth stopped at 1/3
        values = [rng.uniform(1, 10) for _ in steps]
        ok = n % 5 != 0
        failed = n % 7 == 3
        trial = _trial(steps, values, budget, ok=ok)
        if failed:
            trial = dataclasses.replace(trial, status=TrialStatus.FAILED)
        rule.add(trial)
        if not failed:
            at_first.append(values[3])  # step 4 of 36: the first point at or after 1/9
            at_second.append(values[11])  # step 12: 1/3
        (first_rung, first), (second_rung, second) = rule.thresholds()
        k = max(1, (len(at_first) + 1) // 3)  # the best k of the n + 1 there, the new trial included
        assert first == _signed_kth(at_first, k) and second == _signed_kth(at_second, k), f"after {n + 1}"
    # a new trial goes on at a rung exactly when it would be among the best third there
    stop = rule.early_stop()
    assert not stop.prunes(4 / 36, first) and stop.prunes(4 / 36, first + 1e-9)


def test_halving_brackets_skip_first_rungs_by_individual_and_maximise_too():
    settings = EarlyStopping(eta=3, min_fidelity=1 / 27, brackets=4)
    rule = stopping_rule(settings, Objective("accuracy", Direction.MAXIMIZE))
    for values in ([0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]):
        trial = _trial([1, 3, 9, 27], values, 27)
        rule.add(dataclasses.replace(trial, metrics={**trial.metrics, "accuracy_curve": trial.metrics["loss_curve"]}))
    assert [v for _, v in rule.thresholds()] == [0.5, 0.6, 0.7]  # (2 + 1) // 3 = 1: the best so far
    assert [len(rule.early_stop(i).thresholds) for i in range(8)] == [3, 2, 1, 0, 3, 2, 1, 0]
    assert rule.early_stop(1).thresholds == rule.thresholds()[1:]
    assert rule.early_stop(0).prunes(1 / 27, 0.49) and not rule.early_stop(0).prunes(1 / 27, 0.5)


def test_more_brackets_than_rungs_allow_is_refused():
    with pytest.raises(ConfigError, match=r"early_stopping.brackets: 4 is more than the 2 rungs .* \(at most 3\)"):
        EarlyStopping(eta=3, min_fidelity=1 / 9, brackets=4)


def test_a_rung_counts_only_values_from_it_to_the_next_one():
    """A trial is held to a rung's threshold until the next rung, so that is where its value
    counts; one validated only at its end (a bracket that skips the rungs) says nothing there."""
    rule = stopping_rule(EarlyStopping(eta=3, min_fidelity=1 / 9, brackets=3), Objective("loss"))
    rule.add(_trial([36], [1.0], 36))  # only the end
    assert [v for _, v in rule.thresholds()] == [math.inf, math.inf]
    rule.add(_trial([18, 36], [5.0, 4.0], 36))  # first validated at 1/2: past the first rung's window
    assert [v for _, v in rule.thresholds()] == [math.inf, 5.0]
