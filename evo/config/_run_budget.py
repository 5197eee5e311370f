"""The ``run_budget`` section of a run config: when a run ends, in what users pay for.

A run is otherwise sized in generations; a budget says "spend this much": trials trained,
training tokens, or wall-clock hours. Any of them may be set; the first one reached ends
the run. What is spent is read back from the store (trials run here, their tokens, the
driver's time), so a resumed run knows what it has spent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evo.config._fields import check_fields, rule
from evo.trial import ConfigError

__all__ = ["RunBudget"]


@dataclass(frozen=True)
class RunBudget:
    """Limits on the whole run; None: no limit of that kind (at least one is set)."""

    trials: int | None = field(
        default=None,
        metadata=rule(ge=1, help="trials trained, the baseline and every rung included (reused results are free)"),
    )
    train_tokens: int | None = field(
        default=None,
        metadata=rule(ge=1, help="training tokens over all trials (a rung or a stopped trial counts what it trained)"),
    )
    hours: float | None = field(
        default=None,
        metadata=rule(gt=0, help="hours the driver has run this run, over all its resumes (makes a resume inexact)"),
    )

    def __post_init__(self) -> None:
        check_fields(self, "run_budget")
        if self.trials is None and self.train_tokens is None and self.hours is None:
            raise ConfigError(
                "run_budget: set trials, train_tokens or hours (e.g. run_budget: {train_tokens: 4000000})"
            )
