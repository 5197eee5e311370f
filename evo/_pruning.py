"""The median stopping rule: stop a trial whose curve runs worse than the median of earlier ones.

The driver keeps the validation curves of every completed trial of the run (at any
fidelity: all of them follow a schedule over the same whole budget, so a point at 40%
of the budget means the same thing in each) and hands each new trial an
:class:`~evo.trial.EarlyStop` with thresholds: at each fraction of the budget where
earlier trials were evaluated, the median of their values there (each trial's latest
value at or before that fraction). The trial checks them itself as it trains, so the
worker never reads the store (Golovin et al. 2017, as Optuna's MedianPruner).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from evo.storage import TrialRecord
from evo.strategies._settings import EarlyStopping
from evo.trial import EarlyStop, Objective

GRID = 256  # fractions of the budget are compared on this grid, so curves of any step count line up


@dataclass
class MedianRule:
    settings: EarlyStopping
    objective: Objective
    curves: list[tuple[list[float], list[float]]] = field(default_factory=list)  # (fractions, values) per trial

    def add(self, trial: TrialRecord) -> None:
        """Take a finished trial's curve into the medians (completed trials only)."""
        curve = curve_of(trial, self.objective.name)
        if trial.ok and curve:
            self.curves.append(curve)

    def early_stop(self) -> EarlyStop:
        """What a trial starting now is held to."""
        return EarlyStop(self.objective.direction, self.thresholds(), self.settings.loss_ratio)

    def thresholds(self) -> tuple[tuple[float, float], ...]:
        if len(self.curves) < self.settings.min_trials:
            return ()
        grid = sorted({f for fractions, _ in self.curves for f in fractions if f >= self.settings.warmup})
        out = []
        for point in grid:
            here = [
                values[i - 1]
                for fractions, values in self.curves
                if fractions[-1] >= point
                for i in [bisect.bisect_right(fractions, point)]
                if i > 0
            ]
            if len(here) >= self.settings.min_trials:
                out.append((point, float(np.median(here))))
        return tuple(out)


def curve_of(trial: TrialRecord, name: str) -> tuple[list[float], list[float]] | None:
    """A trial's intermediate values of objective ``name`` (its ``<name>_curve`` metric of
    [step, value] pairs) as (fractions of the budget on the grid, values), or None."""
    points = trial.metrics.get(f"{name}_curve") or []
    budget_steps = trial.metrics.get("budget_steps") or trial.metrics.get("steps")
    if not points or not budget_steps:
        return None
    fractions: list[float] = []
    values: list[float] = []
    for step, value in points:
        if value is None:
            continue
        fraction = round(step / budget_steps * GRID) / GRID
        if fractions and fraction <= fractions[-1]:
            fractions[-1], values[-1] = fraction, float(value)  # a later point at the same grid fraction wins
            continue
        fractions.append(fraction)
        values.append(float(value))
    return (fractions, values) if fractions else None
