"""Early stopping: stop a trial whose validation curve runs worse than earlier trials' curves.

The driver keeps the validation curves of the run's trials (at any fidelity: all of them
follow a schedule over the same whole budget, so a point at 40% of the budget means the same
thing in each) and hands each new trial an :class:`~evo.trial.EarlyStop` with thresholds,
``(fraction of the budget, value)`` pairs; the trial checks them itself as it trains, so the
worker never reads the store. Two rules fill them in:

- :class:`HalvingRule` (the default): successive halving, asynchronous, as Optuna's
  HyperbandPruner runs it (Li et al. 2018, ASHA without pausing): at each rung, the value
  that keeps a trial among the best ``1/eta`` of those that reached the rung before it;
  trials take turns at brackets that skip the first rungs.
- :class:`MedianRule`: at each fraction where completed trials were evaluated, the median of
  their values there (Golovin et al. 2017, as Optuna's MedianPruner).

Both are rebuilt from the store when a run resumes, and neither depends on the order in
which trials finished, so a resumed run stops the same trials as an uninterrupted one.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from evo.trial import EarlyStop, Objective, TrialStatus

if TYPE_CHECKING:  # records are read, never made here: the config imports the rungs without the store
    from evo.storage import TrialRecord

GRID = 256  # fractions of the budget are compared on this grid, so curves of any step count line up


@dataclass
class MedianRule:
    """Keeps, for every grid fraction any curve reached, the sorted values of every curve
    there, so a median is a look-up: handing a trial its thresholds costs the same at the
    10,000th trial as at the 10th."""

    objective: Objective
    min_trials: int  # completed curves before anything is stopped
    warmup: float  # no trial is stopped before this fraction of the budget
    loss_ratio: float | None  # stop when the training loss passes this multiple of its first value
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

    def early_stop(self, individual_id: int = 0) -> EarlyStop:
        """What a trial starting now is held to (the same for every trial)."""
        return EarlyStop(self.objective.direction, self.thresholds(), self.loss_ratio)

    def thresholds(self) -> tuple[tuple[float, float], ...]:
        if self._thresholds is None:
            self._thresholds = self._medians()
        return self._thresholds

    def _medians(self) -> tuple[tuple[float, float], ...]:
        if len(self.curves) < self.min_trials:
            return ()
        out = []
        for point in sorted(self._at):
            values = self._at[point]
            if point >= self.warmup and len(values) >= self.min_trials:
                out.append((point, _median(values)))
        return tuple(out)


@dataclass
class HalvingRule:
    """Successive halving as a stopping rule (asynchronous, as Optuna's SuccessiveHalvingPruner
    and ASHA without pausing): at each rung a trial goes on only while it is among the best
    ``1/eta`` of every trial that reached that rung before it, itself included (the best so far
    while fewer than ``eta`` have). Rungs are ``min_fidelity * eta^k`` of the budget. Every
    trial's curve counts, stopped ones too: they reached the rungs they were stopped at."""

    objective: Objective
    rungs: tuple[float, ...]  # fractions of the budget a trial is judged at (see :func:`rung_fractions`)
    eta: int  # the best 1/eta of a rung go on
    brackets: int  # trials take turns at skipping 0 .. brackets - 1 first rungs
    loss_ratio: float | None
    _at: dict[float, list[float]] = field(default_factory=dict)  # rung -> sorted signed values there
    _thresholds: tuple[tuple[float, float], ...] | None = None

    def __post_init__(self) -> None:
        self._at = {round(rung * GRID) / GRID: [] for rung in self.rungs}  # curves are on the grid

    def add(self, trial: TrialRecord) -> None:
        """Take a finished trial's value at each rung it was validated at (stopped trials too; not failed ones)."""
        curve = curve_of(trial, self.objective.name)
        if curve is None or trial.status not in (TrialStatus.COMPLETE, TrialStatus.PRUNED):
            return
        sign = -self.objective.weight  # smaller is better
        rungs = sorted(self._at)
        for rung, until in zip(rungs, [*rungs[1:], 1.0]):
            value = _first_between(curve, rung, until)
            if value is not None:
                bisect.insort(self._at[rung], sign * value)
        self._thresholds = None

    def early_stop(self, individual_id: int = 0) -> EarlyStop:
        """The thresholds of a trial of individual ``individual_id``: its bracket (ids taken in turn)
        skips that many first rungs. An individual, not a trial: a trial run again after a
        resume keeps its bracket."""
        skip = individual_id % self.brackets
        return EarlyStop(self.objective.direction, self.thresholds()[skip:], self.loss_ratio)

    def thresholds(self) -> tuple[tuple[float, float], ...]:
        """One per rung: the value a trial must be no worse than there (none reached it yet: anything)."""
        if self._thresholds is None:
            eta, sign, out = self.eta, -self.objective.weight, []
            for rung, values in sorted(self._at.items()):
                if values:
                    k = max(1, (len(values) + 1) // eta)  # the best k of the n + 1 there go on, itself included
                    out.append((rung, sign * values[k - 1]))
                else:
                    out.append((rung, sign * math.inf))
            self._thresholds = tuple(out)
        return self._thresholds


def _first_between(curve: tuple[list[float], list[float]], start: float, end: float) -> float | None:
    """A curve's first value at a fraction in [start, end): at a rung, the one a trial is judged by
    (it is held to a rung's threshold until the next rung; a trial validated only at its end
    has nothing to say about the rungs)."""
    fractions, values = curve
    i = bisect.bisect_left(fractions, start - 1e-9)
    return values[i] if i < len(values) and fractions[i] < end - 1e-9 else None


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
