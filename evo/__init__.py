"""Evolve fine-tuning hyperparameters with a genetic algorithm.

The public API is re-exported here, lazily, so that ``import evo.trial`` (the contract
the ``fitness`` package uses) stays free of DEAP and numpy. Modules whose names start
with ``_`` are internal: what they offer users is listed below.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "evolve": "evo.run._api",
    "start_run": "evo.run._api",
    "resume_run": "evo.run._api",
    "RunAborted": "evo._errors",
    "genomes_from_run": "evo.search._warm_start",
    "seed_genomes_from": "evo.search._warm_start",  # deprecated: genomes_from_run
    "RunResult": "evo.evaluation._results",
    "build_result": "evo.evaluation._results",
    "RunObserver": "evo.evaluation._observers",
    "RunInfo": "evo.evaluation._observers",
    "write_report": "evo.reporting._report",
    "plot_run": "evo.reporting.plots",
    "compare_runs": "evo.reporting.plots._compare",
    "SearchSpace": "evo.space._genes",
    "Gene": "evo.space._genes",
    "GeneKind": "evo.space._genes",
    "EvolutionSettings": "evo.config",
    "RunConfig": "evo.config",
    "Mode": "evo.config",
    "load_config": "evo.config",
    "parse_config": "evo.config",
    "RunStore": "evo.storage",
    "make_executor": "evo.executors",
    "Trial": "evo.trial",
    "TrialResult": "evo.trial",
    "TrialStatus": "evo.trial",
    "FailureReason": "evo.trial",
    "Objective": "evo.trial",
    "Direction": "evo.trial",
    "Budget": "evo.trial",
    "Fitness": "evo.trial",
    "FitnessBase": "evo.trial",
    "GeneDecl": "evo.trial",
    "ValueKind": "evo.trial",
    "why_refused": "evo.trial",
    "check_value": "evo.trial",  # deprecated: why_refused
    "ConfigError": "evo.trial",
    "Deprecated": "evo.trial",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'evo' has no attribute {name!r}")
