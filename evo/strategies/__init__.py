"""Search strategies, siblings that share a run context rather than a base class.

Each strategy is a module ``_<mode>.py`` with one function ``run(ctx) -> RunResult``
that reads top to bottom; ``evolution.mode`` picks it. Adding a strategy is one new
module plus one value of :class:`Mode`. This package stays light to import: the
strategy modules (DEAP, numpy) load only when a run starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evo.config import RunConfig
    from evo.evaluation import RunResult
    from evo.executors import Executor
    from evo.storage import RunStore
    from evo.trial import Fitness


def run_strategy(
    config: RunConfig, fitness: Fitness, store: RunStore, fingerprint: str, *, executor: Executor, **options: Any
) -> RunResult:
    """Run the strategy ``config.evolution.mode`` names, from wherever the store left off
    (``options``: the warm-start genomes and observers :meth:`RunContext.build` takes)."""
    from evo.evaluation import RunBudgetSpent
    from evo.strategies._context import RunContext

    ctx = RunContext.build(config, fitness, store, fingerprint, executor=executor, **options)
    module = importlib.import_module(f"{__name__}._{ctx.settings.mode.value}")
    try:
        return module.run(ctx)
    except RunBudgetSpent:  # the run budget ended it: what ran is recorded, the rest waits for a resume
        return ctx.finish()
