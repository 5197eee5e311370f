"""What a run has spent of its ``run_budget``, and whether another trial may start.

Trials and training tokens are read from the store when the run opens (so a resumed run
knows what it spent) and kept up to date as trials start and end. A trial in flight
holds what it will cost: one trial, and its planned tokens (the per-trial budget times
the fraction of it the trial adds, or, for a budget in steps, the mean tokens per unit of
budget of the trials so far), so a trial starts only if the run can pay for it. A trial
that ended counts the tokens it reported; a failed one that reported none counts none, and
never stops the run. Hours are
the driver's own time, summed over resumes in the store's meta; only they depend on the
machine's speed, which is why a resumed run with an hours budget may end elsewhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from evo._errors import RunAborted
from evo.config import RunBudget
from evo.storage import RunStore, TrialRecord
from evo.trial import Budget, TrialStatus

DRIVER_SECONDS = "driver_seconds"  # meta: the driver's time in earlier sessions of the run


class RunBudgetSpent(Exception):
    """Raised where a strategy wanted another trial the run budget cannot pay for."""


@dataclass
class Spending:
    """The run's spending against ``limits`` (None: the run has no run_budget)."""

    limits: RunBudget | None
    budget: Budget
    trials: int = 0
    tokens: float = 0.0
    earlier_seconds: float = 0.0
    _started: float = field(default_factory=time.monotonic)
    _reserved: dict[int, float] = field(default_factory=dict)  # planned tokens by trial id
    _fractions: float = 0.0  # budget fractions trained, for the tokens a trial of a steps budget plans

    @classmethod
    def open(cls, store: RunStore, limits: RunBudget | None, budget: Budget) -> Spending:
        spending = cls(limits, budget, earlier_seconds=float(store.meta(DRIVER_SECONDS, 0.0)))
        for status, fraction, tokens in store.spent():
            spending._add(fraction, counted_tokens(status, tokens, budget, fraction))
        return spending

    @property
    def hours(self) -> float:
        return (self.earlier_seconds + time.monotonic() - self._started) / 3600

    def allows(self, fraction: float = 1.0) -> bool:
        """Whether a trial that trains ``fraction`` of the per-trial budget may start now."""
        limits = self.limits
        if limits is None:
            return True
        if limits.trials is not None and self.trials + len(self._reserved) >= limits.trials:
            return False
        if limits.hours is not None and self.hours >= limits.hours:
            return False
        if limits.train_tokens is not None:
            committed = self.tokens + sum(self._reserved.values())
            return committed + self.planned(fraction) <= limits.train_tokens
        return True

    def planned(self, fraction: float) -> float:
        """Tokens a trial adding ``fraction`` of the per-trial budget is expected to train."""
        if self.budget.tokens is not None:
            return self.budget.tokens * fraction
        return self.tokens / self._fractions * fraction if self._fractions else 0.0

    def started(self, trial_id: int, fraction: float) -> None:
        self._reserved[trial_id] = self.planned(fraction)

    def finished(self, record: TrialRecord, fraction: float) -> None:
        """A trial ended (whatever its status: it trained); ``fraction``: what it added of the budget."""
        self._reserved.pop(record.id, None)
        tokens = counted_tokens(record.status, record.metrics.get("train_tokens"), self.budget, fraction)
        if tokens is None and self.limits is not None and self.limits.train_tokens is not None:
            raise RunAborted(
                f"run_budget.train_tokens: the fitness reported no train_tokens for trial {record.id} and the "
                "budget is in steps; use budget.tokens, or run_budget.trials or hours"
            )
        self._add(fraction, tokens)

    def _add(self, fraction: float, tokens: float | None) -> None:
        self.trials += 1
        if tokens is not None:
            self.tokens += tokens
            if tokens > 0:  # a failure that reported nothing says nothing of the tokens a unit of budget trains
                self._fractions += fraction

    def driver_seconds(self) -> float:
        return self.earlier_seconds + time.monotonic() - self._started

    def left(self, *, running: bool = True) -> dict[str, tuple[float, float]]:
        """(spent, limit) of each limit the run has, for progress lines and ``evo status``."""
        if self.limits is None:
            return {}
        hours = self.hours if running else self.earlier_seconds / 3600
        spent = {"trials": float(self.trials), "train_tokens": self.tokens, "hours": hours}
        return {name: (spent[name], float(limit)) for name, limit in vars(self.limits).items() if limit is not None}

    def eta_seconds(self, *, running: bool = True) -> float | None:
        """Seconds until the first limit is reached, at the pace of the run so far (None: no limit,
        or nothing spent yet to judge the pace by). ``running=False``: read by another process
        (``evo status``), which counts the driver's time only up to its last write."""
        seconds = self.driver_seconds() if running else self.earlier_seconds
        shares = [spent / limit for spent, limit in self.left(running=running).values()]
        done = max(shares, default=0.0)
        if done <= 0 or seconds <= 0:
            return None
        return max(0.0, seconds * (1 - done) / done)

    def summary(self, *, running: bool = True) -> str:
        """``trials 13/20, train tokens 2.7M/4M, hours 0.5/2``: what the run has spent of each limit."""
        parts = []
        for name, (spent, limit) in self.left(running=running).items():
            show = _hours if name == "hours" else _count
            parts.append(f"{name.replace('_', ' ')} {show(spent)}/{show(limit)}")
        return ", ".join(parts)


def counted_tokens(status: TrialStatus, reported: float | None, budget: Budget, fraction: float) -> float | None:
    """The tokens a trial that ended spent of the run budget: what it reported; else nothing when
    it failed (an exception, an OOM: whatever it trained is unknown, and a run budget must never
    stop a run for it), or its planned tokens under a budget in tokens; None: unknown (a trial
    that ran to its end under a budget in steps and reported none)."""
    if reported is not None:
        return float(reported)
    if status is TrialStatus.FAILED:
        return 0.0
    return budget.tokens * fraction if budget.tokens is not None else None


def _count(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.0f}"


def _hours(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def duration(seconds: float) -> str:
    """``45s``, ``12.5m``, ``3h05m``: how progress lines and ``evo status`` show an ETA."""
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.1f}m"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
