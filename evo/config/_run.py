"""A whole run config: :class:`RunConfig`, the parser, and the resolved copy a run keeps.

Each section is built by :func:`evo.config._fields.build` from the settings class that
owns it; what spans sections (the budget, fixed values against genes, the baseline,
multi-fidelity as a mode) is checked here, explicitly.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from evo.config._evolution import MAX_GENERATIONS, EvolutionSettings, Mode, Survival
from evo.config._executor import ExecutorSettings
from evo.config._fields import build, check_field, check_fields, rule, unknown_key
from evo.config._run_budget import RunBudget
from evo.space import SearchSpace
from evo.trial import Budget, ConfigError

__all__ = ["REPORT_TO", "ArtifactPolicy", "RunConfig", "parse_config", "resolved"]

# The experiment trackers evo.reporting._trackers can build, and the Optuna mirror (evo.optuna._mirror);
# "auto" is the mirror when optuna is installed. Whether one is installed is checked where
# they are built, at run start: the config stays free of imports.
REPORT_TO = ("auto", "optuna", "tensorboard", "mlflow", "wandb")

_TOP_KEYS = (
    "seed",
    "fitness",
    "budget",
    "evolution",
    "search_space",
    "fixed",
    "baseline",
    "artifacts",
    "report_to",
    "executor",
    "run_budget",
)


class ArtifactPolicy(str, enum.Enum):
    BEST = "best"  # keep the artifacts (adapter) of the best trial so far only
    ALL = "all"
    NONE = "none"


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, validated. ``raw`` is the resolved YAML, for the run directory."""

    space: SearchSpace = field(metadata=rule(help="the genes: name: {type, low, high | choices, ...} (required)"))
    fitness: Mapping[str, Any] = field(metadata=rule(help="what scores a genome: type and its settings (required)"))
    # steps or tokens, always: a run without one would train forever or not at all
    budget: Budget = field(metadata=rule(help="training compute per genome, the same for all (required)"))
    seed: int = field(
        default=0, metadata=rule(ge=0, help="master seed: every generation's and trial's seed derives from it")
    )
    fixed: Mapping[str, Any] = field(default_factory=dict, metadata=rule(help="config values set, not searched"))
    evolution: EvolutionSettings = field(
        default_factory=EvolutionSettings, metadata=rule(help="how the population evolves")
    )
    baseline: Mapping[str, Any] | None = field(
        default=None, metadata=rule(help="an untuned config, evaluated once and reported beside the best")
    )
    artifacts: ArtifactPolicy = field(
        default=ArtifactPolicy.BEST, metadata=rule(help="whose artifacts (LoRA adapters) are kept")
    )
    report_to: tuple[str, ...] = field(
        default=("auto",),
        metadata=rule(
            help="where the run is mirrored as it goes: optuna (RUN_DIR/optuna.journal, for evo dashboard), "
            "tensorboard, mlflow, wandb (each an extra); auto: optuna when it is installed; none: nowhere"
        ),
    )
    executor: ExecutorSettings = field(default_factory=ExecutorSettings, metadata=rule(help="where trials run"))
    run_budget: RunBudget | None = field(
        default=None, metadata=rule(help="the run's limits: trials, train_tokens, hours; the first reached ends it")
    )
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        check_fields(self, "")

    def trial_config(self, genome: Mapping[str, Any]) -> dict[str, Any]:
        """Fixed values and genes together, as the fitness sees them."""
        return {**self.fixed, **genome}


def parse_config(raw: Any) -> RunConfig:
    """Validate a run config given as a mapping (the parsed YAML)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config: expected a mapping at the top level, got {type(raw).__name__}")
    for key in raw:
        if key not in _TOP_KEYS:
            raise unknown_key("", key, _TOP_KEYS, "unknown top-level key")
    seed = raw.get("seed", 0)
    check_field(RunConfig, "seed", seed)
    fitness = _mapping(raw, "fitness")
    if not fitness.get("type"):
        raise ConfigError("fitness.type: missing (e.g. 'synthetic' or 'qlora')")
    space = SearchSpace.from_spec(raw.get("search_space"))
    fixed = _mapping(raw, "fixed")
    both = sorted(set(fixed) & set(space.names))
    if both:
        raise ConfigError(f"fixed.{both[0]}: is also a searched gene; keep it in one place")
    baseline = raw.get("baseline")
    if baseline is not None:
        if not isinstance(baseline, Mapping) or not baseline:
            raise ConfigError("baseline: expected a non-empty mapping of hyperparameter values")
        for key, value in baseline.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"baseline.{key}: must be finite, got {value!r}")
    run_budget = (
        build(RunBudget, _mapping(raw, "run_budget"), "run_budget") if raw.get("run_budget") is not None else None
    )
    evolution_spec = _with_mode(_mapping(raw, "evolution"))
    if run_budget is not None and "generations" not in evolution_spec:
        evolution_spec["generations"] = MAX_GENERATIONS  # the budget ends the run
    evolution = build(EvolutionSettings, evolution_spec, "evolution")
    if evolution.prior_share > 0 and not baseline:
        raise ConfigError(
            f"evolution.prior_share: {evolution.prior_share} of the initial population is drawn around the "
            "baseline config, but the config has no baseline"
        )
    config = RunConfig(
        space=space,
        fitness=fitness,
        seed=seed,
        fixed=fixed,
        budget=_budget(raw.get("budget")),
        evolution=evolution,
        baseline=dict(baseline) if baseline else None,
        artifacts=_artifacts(raw.get("artifacts", "best")),
        report_to=_report_to(raw.get("report_to")),
        executor=build(ExecutorSettings, _mapping(raw, "executor"), "executor"),
        run_budget=run_budget,
    )
    return dataclasses.replace(config, raw=resolved(config, raw))


def _mapping(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
    return dict(value)


def _with_mode(spec: dict[str, Any]) -> dict[str, Any]:
    """The mode a config without one runs: multi-fidelity when it has the block (a mode of its
    own), generational for ``mu_comma_lambda`` (steady state replaces one member at a time),
    else the default, steady state. ``mode: multi_fidelity`` without the block gets its defaults."""
    mode = getattr(spec.get("mode"), "value", spec.get("mode"))
    block = spec.get("multi_fidelity")
    has_block = block is not None and block is not False
    if mode in (None, Mode.GENERATIONAL.value) and has_block:
        return {**spec, "mode": Mode.MULTI_FIDELITY.value}
    if mode is None and getattr(spec.get("strategy"), "value", spec.get("strategy")) == Survival.MU_COMMA_LAMBDA.value:
        return {**spec, "mode": Mode.GENERATIONAL.value}
    if mode == Mode.MULTI_FIDELITY.value and block is None:
        return {**spec, "multi_fidelity": True}
    return spec


def _budget(spec: Any) -> Budget:
    if spec is None or spec == {}:
        raise ConfigError("budget: set steps or tokens (e.g. budget: {steps: 100})")
    if not isinstance(spec, Mapping):
        raise ConfigError(f"budget: expected a mapping such as {{steps: 100}}, got {spec!r}")
    for key in spec:
        if key not in ("steps", "tokens"):
            raise unknown_key("budget", key, ("steps", "tokens"))
    for key in ("steps", "tokens"):
        check_field(Budget, key, spec.get(key), f"budget.{key}")
    if spec.get("steps") is None and spec.get("tokens") is None:
        raise ConfigError("budget: set steps or tokens (e.g. budget: {steps: 100})")
    return Budget(steps=spec.get("steps"), tokens=spec.get("tokens"))


def _artifacts(value: Any) -> ArtifactPolicy:
    try:
        return ArtifactPolicy(value)
    except ValueError:
        known = ", ".join(p.value for p in ArtifactPolicy)
        raise ConfigError(f"artifacts: unknown value {value!r} (known: {known})") from None


def _report_to(value: Any) -> tuple[str, ...]:
    if value is None:
        return ("auto",)
    if value in ("none", []):
        return ()
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"report_to: expected a list of backend names, got {value!r}")
    for name in names:
        if name not in REPORT_TO:
            raise ConfigError(f"report_to: unknown backend {name!r} (known: {', '.join(REPORT_TO)})")
    return tuple(dict.fromkeys(names))


def _plain(settings: Any) -> dict[str, Any]:
    """A settings dataclass as YAML-ready values (enums by value)."""

    def plain(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return value.value
        return _plain(value) if dataclasses.is_dataclass(value) else value

    return {f.name: plain(getattr(settings, f.name)) for f in dataclasses.fields(settings)}


def resolved(config: RunConfig, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The config with every default written out: what the run directory keeps."""
    evolution = _plain(config.evolution)
    evolution["generations"] = config.evolution.planned_generations  # what the run does (PBT derives it)
    out = {
        "seed": config.seed,
        "fitness": dict(config.fitness),
        "budget": {k: v for k, v in config.budget.as_dict().items() if v is not None},
        "evolution": evolution,
        "search_space": dict(raw["search_space"]),
        "fixed": dict(config.fixed),
        "artifacts": config.artifacts.value,
        "report_to": list(config.report_to),
        "executor": _plain(config.executor),
    }
    if config.baseline:
        out["baseline"] = dict(config.baseline)
    if config.run_budget is not None:
        out["run_budget"] = {k: v for k, v in _plain(config.run_budget).items() if v is not None}
    return out
