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

from evo.config import EarlyStopping
from evo.storage import TrialRecord
from evo.trial import EarlyStop, Objective

GRID = 256  # fractions of the budget are compared on this grid, so curves of any step count line up


@dataclass
class MedianRule:
    """Keeps, for every grid fraction any curve reached, the sorted values of every curve
    there, so a median is a look-up: handing a trial its thresholds costs the same at the
    10,000th trial as at the 10th."""

    settings: EarlyStopping
    objective: Objective
    curves: list[tuple[list[float], list[float]]] = field(default_factory=list)  # (fractions, values) per trial
    _at: dict[float, list[float]] = field(default_factory=dict)  # fraction -> sorted values of curves there
    _thresholds: tuple[tuple[float, float], ...] | None = None  # cached until the next curve

    def add(self, trial: TrialRecord) -> None:
        """Take a finished trial's curve into the medians (completed trials only)."""
        curve = curve_of(trial, self.objective.name)
        if not (trial.ok and curve):
            return
        self.curves.append(curve)
        self._thresholds = None
        fractions, _ = curve
        for point, values in self._at.items():
            value = _value_at(curve, point)
            if value is not None:
                bisect.insort(values, value)
        for point in fractions:
            if point not in self._at:  # a fraction no curve had: its values from every curve so far
                self._at[point] = sorted(v for c in self.curves if (v := _value_at(c, point)) is not None)

    def early_stop(self) -> EarlyStop:
        """What a trial starting now is held to."""
        return EarlyStop(self.objective.direction, self.thresholds(), self.settings.loss_ratio)

    def thresholds(self) -> tuple[tuple[float, float], ...]:
        if self._thresholds is None:
            self._thresholds = self._medians()
        return self._thresholds

    def _medians(self) -> tuple[tuple[float, float], ...]:
        if len(self.curves) < self.settings.min_trials:
            return ()
        out = []
        for point in sorted(self._at):
            values = self._at[point]
            if point >= self.settings.warmup and len(values) >= self.settings.min_trials:
                out.append((point, _median(values)))
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


def _value_at(curve: tuple[list[float], list[float]], point: float) -> float | None:
    """A curve's latest value at or before ``point``; None before its first point or past its end."""
    fractions, values = curve
    if fractions[-1] < point:
        return None
    i = bisect.bisect_right(fractions, point)
    return values[i - 1] if i > 0 else None


def _median(ordered: list[float]) -> float:
    """The median of sorted values, as numpy computes it, in O(1)."""
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return float((ordered[middle - 1] + ordered[middle]) / 2)
