"""The run config: one YAML file, validated into typed, immutable settings.

Every mistake is a :class:`~evo.trial.ConfigError` whose one-line message names the key,
raised before anything is written. The resolved config (defaults filled in) is what the
run directory keeps. The settings classes live beside the parts that read them
(``evo.strategies._settings``, ``evo.executors._settings``) and are re-exported here.

A leaf: this package imports only ``evo.trial``, ``evo._space`` and those two settings
modules. Names are loaded lazily (as in ``evo/__init__.py``) because the settings modules
import ``evo.config._fields``: an eager import of them here would be a cycle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evo.config._fields import Rule, build, check_fields, probability, rule
    from evo.config._run import REPORT_TO, ArtifactPolicy, RunConfig, parse_config, resolved
    from evo.config._yaml import apply_override, load_config, read_yaml
    from evo.executors._settings import ExecutorSettings, ExecutorType
    from evo.strategies._settings import (
        Crossover,
        EarlyStopping,
        EvolutionSettings,
        Mode,
        MultiFidelity,
        PBTSettings,
        Strategy,
        Surrogate,
    )

__all__ = [
    "REPORT_TO",
    "ArtifactPolicy",
    "Crossover",
    "EarlyStopping",
    "EvolutionSettings",
    "ExecutorSettings",
    "ExecutorType",
    "Mode",
    "MultiFidelity",
    "PBTSettings",
    "Rule",
    "RunConfig",
    "Strategy",
    "Surrogate",
    "apply_override",
    "build",
    "check_fields",
    "load_config",
    "parse_config",
    "probability",
    "read_yaml",
    "resolved",
    "rule",
]
_HOMES = {
    "evo.config._fields": ("Rule", "build", "check_fields", "probability", "rule"),
    "evo.config._run": ("REPORT_TO", "ArtifactPolicy", "RunConfig", "parse_config", "resolved"),
    "evo.config._yaml": ("apply_override", "load_config", "read_yaml"),
    "evo.executors._settings": ("ExecutorSettings", "ExecutorType"),
    "evo.strategies._settings": (
        "Crossover",
        "EarlyStopping",
        "EvolutionSettings",
        "Mode",
        "MultiFidelity",
        "PBTSettings",
        "Strategy",
        "Surrogate",
    ),
}
_EXPORTS = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'evo.config' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
