"""Search strategies, siblings that share a run context rather than a base class.

Each strategy is a module ``_<mode>.py`` with one function ``run(ctx) -> RunResult``
that reads top to bottom; ``evolution.mode`` picks it. Adding a strategy is one new
module plus one value of :class:`Mode`. This package stays light to import: the
strategy modules (DEAP, numpy) load only when a run starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evo._results import RunResult
    from evo.strategies._context import RunContext


def run_strategy(ctx: RunContext) -> RunResult:
    """Run the strategy ``ctx.settings.mode`` names, from wherever the store left off."""
    from evo._spending import BudgetSpent

    module = importlib.import_module(f"{__name__}._{ctx.settings.mode.value}")
    try:
        return module.run(ctx)
    except BudgetSpent:  # the run budget ended it: what ran is recorded, the rest waits for a resume
        return ctx.finish()
