"""The run config: one YAML file, validated into typed, immutable settings.

Every mistake is a :class:`~evo.trial.ConfigError` whose one-line message names the key,
raised before anything is written. The resolved config (defaults filled in) is what the
run directory keeps.

Low in the layers: this package imports only the contract, the search space and early
stopping's rung arithmetic; every other folder reads its settings from here.
"""

from __future__ import annotations

from evo.config._evolution import (
    AUTO,
    MAX_GENERATIONS,
    Crossover,
    EarlyStopping,
    EvolutionSettings,
    Init,
    Mode,
    MultiFidelity,
    PBTSettings,
    Replacement,
    StopRule,
    Surrogate,
    Survival,
)
from evo.config._executor import AUTO_DEVICES, ExecutorSettings, ExecutorType
from evo.config._fields import Rule, build, check_fields, probability, rule
from evo.config._reference import reference
from evo.config._run import REPORT_TO, ArtifactPolicy, RunConfig, parse_config, resolved
from evo.config._run_budget import RunBudget
from evo.config._yaml import apply_override, load_config, read_yaml

__all__ = [
    "AUTO",
    "MAX_GENERATIONS",
    "AUTO_DEVICES",
    "REPORT_TO",
    "ArtifactPolicy",
    "Crossover",
    "EarlyStopping",
    "EvolutionSettings",
    "ExecutorSettings",
    "ExecutorType",
    "Init",
    "Mode",
    "MultiFidelity",
    "PBTSettings",
    "Replacement",
    "Rule",
    "RunBudget",
    "RunConfig",
    "StopRule",
    "Survival",
    "Surrogate",
    "apply_override",
    "build",
    "check_fields",
    "load_config",
    "parse_config",
    "probability",
    "read_yaml",
    "reference",
    "resolved",
    "rule",
]
