"""Evaluating trials for a run's loop: the evaluator (the cache, the store, failures, early
stopping's thresholds handed to each trial), the run budget it spends, the observers it
tells, and what the run found (best, Pareto front, history), read back from the store."""

from __future__ import annotations

from evo.evaluation._evaluator import Evaluator, Job, RunAborted, penalty, run_fingerprint
from evo.evaluation._observers import Fanout, RunInfo, RunObserver
from evo.evaluation._results import RunResult, build_result, stored_objectives
from evo.evaluation._spending import DRIVER_SECONDS, RunBudgetSpent, Spending, duration

__all__ = [
    "DRIVER_SECONDS",
    "Evaluator",
    "Fanout",
    "Job",
    "RunAborted",
    "RunBudgetSpent",
    "RunInfo",
    "RunObserver",
    "RunResult",
    "Spending",
    "build_result",
    "duration",
    "penalty",
    "run_fingerprint",
    "stored_objectives",
]
