"""Evolve fine-tuning hyperparameters with a genetic algorithm.

The public API is re-exported here lazily, so that ``import evo.trial`` (the contract
the ``fitness`` package uses) stays free of DEAP and numpy.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "evolve": "evo.api",
    "start_run": "evo.api",
    "resume_run": "evo.api",
    "seed_genomes_from": "evo.seeding",
    "RunResult": "evo.results",
    "SearchSpace": "evo.space",
    "Gene": "evo.space",
    "EvolutionSettings": "evo.config",
    "RunConfig": "evo.config",
    "load_config": "evo.config",
    "parse_config": "evo.config",
    "RunStore": "evo.storage",
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
    "check_value": "evo.trial",
    "ConfigError": "evo.trial",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'evo' has no attribute {name!r}")
