"""The run config: one YAML file, validated into typed, immutable settings.

Every mistake is a :class:`ConfigError` whose one-line message names the key, and it
is raised before anything is written. The resolved config (defaults filled in) is
what the run directory keeps.
"""
from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from evo.space import SearchSpace
from evo.trackers import check_report_to
from evo.trial import Budget, ConfigError


class Strategy(str, enum.Enum):
    MU_PLUS_LAMBDA = "mu_plus_lambda"  # survivors from parents + offspring: elitist
    MU_COMMA_LAMBDA = "mu_comma_lambda"  # survivors from offspring (+ elites): forgets faster


class Crossover(str, enum.Enum):
    UNIFORM = "uniform"
    BLEND = "blend"


class Surrogate(str, enum.Enum):
    NONE = "none"  # every bred child is evaluated
    TPE = "tpe"  # breed surrogate_candidates x lambda children, evaluate the lambda a TPE density ratio ranks best


class Mode(str, enum.Enum):
    GENERATIONAL = "generational"  # breed lambda children, wait for all, select: reproducible
    STEADY_STATE = "steady_state"  # breed a child whenever a worker is free; it replaces the worst
    PBT = "pbt"  # population-based training: members train side by side, the worst copy the best


@dataclass(frozen=True)
class MultiFidelity:
    """Successive halving inside each generation (as DEHB): every new individual trains to
    ``min_fidelity`` of the budget, the best 1/eta of each rung continue eta times further
    from their checkpoint, up to the whole budget."""

    eta: int = 3
    min_fidelity: float = 1 / 9

    def __post_init__(self) -> None:
        if isinstance(self.eta, bool) or not isinstance(self.eta, int) or self.eta < 2:
            raise ConfigError(f"evolution.multi_fidelity.eta: must be a whole number >= 2, got {self.eta!r}")
        low = self.min_fidelity
        if isinstance(low, bool) or not isinstance(low, (int, float)) or not 0 < low < 1:
            raise ConfigError(f"evolution.multi_fidelity.min_fidelity: must be in (0, 1), got {low!r}")

    @property
    def rungs(self) -> tuple[float, ...]:
        """Fractions of the budget, smallest first, ending at 1: min_fidelity * eta^k."""
        out, fraction = [], float(self.min_fidelity)
        while fraction < 0.999:  # a rung within 0.1% of the whole budget is the whole budget (1/9 given as 0.111)
            out.append(fraction)
            fraction *= self.eta
        return (*out, 1.0)


@dataclass(frozen=True)
class EarlyStopping:
    """The median stopping rule, plus stopping a diverging loss. Needs a fitness that
    evaluates during training (QLoRA: ``fitness.eval_every``)."""

    min_trials: int = 5  # completed trials whose curves make a median before anything is stopped
    warmup: float = 0.25  # no trial is stopped before this fraction of the budget
    loss_ratio: float | None = 3.0  # stop when the training loss exceeds this multiple of its first value

    def __post_init__(self) -> None:
        if isinstance(self.min_trials, bool) or not isinstance(self.min_trials, int) or self.min_trials < 1:
            raise ConfigError(f"evolution.early_stopping.min_trials: must be a whole number >= 1, got {self.min_trials!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, (int, float)) or not 0 <= self.warmup < 1:
            raise ConfigError(f"evolution.early_stopping.warmup: must be in [0, 1), got {self.warmup!r}")
        ratio = self.loss_ratio
        if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio <= 1):
            raise ConfigError(f"evolution.early_stopping.loss_ratio: must be > 1 or null, got {ratio!r}")


@dataclass(frozen=True)
class PBTSettings:
    """Population-based training: every ``interval`` of the budget the bottom ``quantile``
    copies a top-quantile member's adapter and optimizer state (exploit) and mutates its
    non-structural hyperparameters (explore)."""

    interval: float = 0.25
    quantile: float = 0.25

    def __post_init__(self) -> None:
        if isinstance(self.interval, bool) or not isinstance(self.interval, (int, float)) or not 0 < self.interval <= 0.5:
            raise ConfigError(f"evolution.pbt.interval: must be in (0, 0.5], got {self.interval!r}")
        if isinstance(self.quantile, bool) or not isinstance(self.quantile, (int, float)) or not 0 < self.quantile <= 0.5:
            raise ConfigError(f"evolution.pbt.quantile: must be in (0, 0.5], got {self.quantile!r}")

    @property
    def ends(self) -> tuple[float, ...]:
        """The fraction of the budget each interval trains up to; the last is 1."""
        n = max(2, round(1 / self.interval))
        return tuple((k + 1) / n for k in range(n))


class ExecutorType(str, enum.Enum):
    LOCAL = "local"  # trials in the driver process
    RAY = "ray"  # trials on actors of a Ray cluster


class ArtifactPolicy(str, enum.Enum):
    BEST = "best"  # keep the artifacts (adapter) of the best trial so far only
    ALL = "all"
    NONE = "none"


@dataclass(frozen=True)
class EvolutionSettings:
    """How the population evolves. Rates are probabilities per child or per gene."""

    population_size: int = 8  # mu
    generations: int = 10  # generations after the initial one (in pbt mode: intervals - 1, from pbt.interval)
    offspring_size: int | None = None  # lambda; None = population_size
    strategy: Strategy = Strategy.MU_PLUS_LAMBDA
    crossover: Crossover = Crossover.BLEND
    crossover_rate: float = 0.6  # chance a child is bred from two parents
    mutation_rate: float = 0.5  # chance a crossed child is also mutated (uncrossed ones always are)
    gene_mutation_rate: float = 0.3  # chance each gene of a mutated child moves
    mutation_sigma: float = 0.15  # Gaussian step, as a fraction of a gene's (log) range
    tournament_size: int = 3
    elitism: int = 1  # best individuals that always survive under mu_comma_lambda
    immigrants: int = 0  # random newcomers per generation, to keep diversity
    hall_of_fame: int = 5
    max_consecutive_failures: int = 10  # stop the run when the fitness keeps failing
    mode: Mode = Mode.GENERATIONAL
    # Screen bred children with a model of all results so far (evo.surrogate). TPE by default: on the BBOB
    # benchmark (README) it needs ~0.7x the evaluations of plain evolution to reach Optuna TPE's result at 100.
    surrogate: Surrogate = Surrogate.TPE
    surrogate_candidates: int = 10  # children bred per evaluated child when a surrogate screens them
    multi_fidelity: MultiFidelity | None = None  # None: every individual trains on the whole budget
    early_stopping: EarlyStopping | None = None  # None: every trial runs to its budget
    pbt: PBTSettings = PBTSettings()  # used by mode: pbt

    @property
    def lambda_(self) -> int:
        return self.offspring_size or self.population_size

    def __post_init__(self) -> None:
        def whole(key: str, minimum: int) -> None:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"evolution.{key}: must be a whole number >= {minimum}, got {value!r}")

        def rate(key: str) -> None:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ConfigError(f"evolution.{key}: must be a probability in [0, 1], got {value!r}")

        whole("population_size", 2)
        whole("generations", 0)
        if self.offspring_size is not None:
            whole("offspring_size", 1)
        whole("tournament_size", 1)
        whole("elitism", 0)
        whole("immigrants", 0)
        whole("hall_of_fame", 1)
        whole("max_consecutive_failures", 1)
        whole("surrogate_candidates", 1)
        if not isinstance(self.surrogate, Surrogate):
            raise ConfigError(f"evolution.surrogate: expected a Surrogate, got {self.surrogate!r}")
        for key in ("crossover_rate", "mutation_rate", "gene_mutation_rate"):
            rate(key)
        sigma = self.mutation_sigma
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma <= 1:
            raise ConfigError(f"evolution.mutation_sigma: must be in (0, 1], got {sigma!r}")
        if self.strategy is Strategy.MU_COMMA_LAMBDA and self.lambda_ < self.population_size:
            raise ConfigError(
                f"evolution.offspring_size: mu_comma_lambda needs offspring_size >= population_size "
                f"({self.lambda_} < {self.population_size})"
            )
        if self.immigrants > self.lambda_:
            raise ConfigError(f"evolution.immigrants: {self.immigrants} is more than the {self.lambda_} offspring")
        if self.elitism > self.population_size:
            raise ConfigError(f"evolution.elitism: {self.elitism} is more than the population ({self.population_size})")
        if self.mode is Mode.PBT:  # one generation per interval: the budget sets how many there are
            object.__setattr__(self, "generations", len(self.pbt.ends) - 1)
        if self.multi_fidelity is not None and self.mode is not Mode.GENERATIONAL:
            raise ConfigError(
                f"evolution.multi_fidelity: works with mode: generational, not {self.mode.value} "
                "(PBT already trains in intervals)"
            )
        if self.mode is Mode.STEADY_STATE and self.strategy is Strategy.MU_COMMA_LAMBDA:
            raise ConfigError(
                "evolution.strategy: steady_state replaces the worst member, which is mu_plus_lambda; "
                "mu_comma_lambda needs generations"
            )


@dataclass(frozen=True)
class ExecutorSettings:
    """Where trials run. ``workers`` is how many run at once: None means 1 locally and,
    on Ray, as many as the cluster's resources hold (one per GPU, or per
    ``cpus_per_trial`` CPUs on CPU-only clusters)."""

    type: ExecutorType = ExecutorType.LOCAL
    address: str | None = None  # Ray cluster address ("auto", "ray://head:10001"); None starts a local cluster
    workers: int | None = None
    cpus_per_trial: float = 1.0  # Ray resources reserved per actor; fractions share a CPU between sleepers
    gpus_per_trial: float | None = None  # None: 1 when the cluster has GPUs, else 0
    max_retries: int = 2  # re-runs of a trial whose worker died, before it counts as failed (killed)

    def __post_init__(self) -> None:
        def number(key: str, minimum: float, whole: bool = False, strict: bool = False) -> None:
            value = getattr(self, key)
            kinds = int if whole else (int, float)
            bad = isinstance(value, bool) or not isinstance(value, kinds) or value < minimum
            if bad or (strict and value == minimum) or (not whole and not math.isfinite(value)):
                what = "a whole number" if whole else "a number"
                raise ConfigError(f"executor.{key}: must be {what} {'>' if strict else '>='} {minimum}, got {value!r}")

        if self.workers is not None:
            number("workers", 1, whole=True)
        number("cpus_per_trial", 0, strict=True)
        if self.gpus_per_trial is not None:
            number("gpus_per_trial", 0)
        number("max_retries", 0, whole=True)
        if self.address is not None and (not isinstance(self.address, str) or not self.address):
            raise ConfigError(f"executor.address: expected a Ray address such as 'auto', got {self.address!r}")
        if self.address is not None and self.type is not ExecutorType.RAY:
            raise ConfigError("executor.address: only the ray executor connects to a cluster")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, validated. ``raw`` is the resolved YAML, for the run directory."""

    space: SearchSpace
    fitness: Mapping[str, Any]
    seed: int = 0
    fixed: Mapping[str, Any] = field(default_factory=dict)
    budget: Budget = Budget()
    evolution: EvolutionSettings = EvolutionSettings()
    baseline: Mapping[str, Any] | None = None
    artifacts: ArtifactPolicy = ArtifactPolicy.BEST
    report_to: tuple[str, ...] = ()  # experiment trackers: tensorboard, mlflow, wandb
    executor: ExecutorSettings = ExecutorSettings()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def trial_config(self, genome: Mapping[str, Any]) -> dict[str, Any]:
        """Fixed values and genes together, as the fitness sees them."""
        return {**self.fixed, **genome}


_TOP_KEYS = {
    "seed", "fitness", "budget", "evolution", "search_space", "fixed", "baseline", "artifacts", "report_to", "executor"
}


def _enum(cls: type[enum.Enum], key: str, value: Any) -> Any:
    try:
        return cls(value)
    except ValueError:
        known = ", ".join(m.value for m in cls)
        raise ConfigError(f"{key}: unknown value {value!r} (known: {known})") from None


def _mapping(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
    return dict(value)


def _budget(spec: Mapping[str, Any]) -> Budget:
    extra = set(spec) - {"steps", "tokens"}
    if extra:
        raise ConfigError(f"budget: unknown key(s) {', '.join(sorted(extra))} (known: steps, tokens)")
    for key in ("steps", "tokens"):
        value = spec.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"budget.{key}: must be a whole number >= 1, got {value!r}")
    return Budget(steps=spec.get("steps"), tokens=spec.get("tokens"))


def _settings(cls: type, section: str, spec: Mapping[str, Any], enums: Mapping[str, type[enum.Enum]]) -> Any:
    """A settings dataclass from its config section; unknown keys and enum values are errors."""
    extra = set(spec) - {f.name for f in dataclasses.fields(cls)}
    if extra:
        raise ConfigError(f"{section}: unknown key(s) {', '.join(sorted(extra))}")
    values = dict(spec)
    for key, kind in enums.items():
        if key in values:
            values[key] = _enum(kind, f"{section}.{key}", values[key])
    return cls(**values)


def _evolution(spec: Mapping[str, Any]) -> EvolutionSettings:
    spec = dict(spec)
    for key, cls in (("multi_fidelity", MultiFidelity), ("early_stopping", EarlyStopping), ("pbt", PBTSettings)):
        if key in spec:
            spec[key] = _section(cls, f"evolution.{key}", spec[key], optional=key != "pbt")
    return _settings(EvolutionSettings, "evolution", spec, {
        "strategy": Strategy, "crossover": Crossover, "mode": Mode, "surrogate": Surrogate,
    })


def _section(cls: type, key: str, value: Any, *, optional: bool) -> Any:
    """A nested settings block: a mapping, ``true`` for the defaults, or ``null``/``false`` for off."""
    if value is None or value is False:
        if not optional:
            raise ConfigError(f"{key}: cannot be switched off; leave it out for the defaults")
        return None
    if value is True:
        return cls()
    if isinstance(value, cls):  # already parsed (the Python API passes settings objects)
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a mapping, true or null, got {value!r}")
    return _settings(cls, key, value, {})


def _executor(spec: Mapping[str, Any]) -> ExecutorSettings:
    return _settings(ExecutorSettings, "executor", spec, {"type": ExecutorType})


def parse_config(raw: Any) -> RunConfig:
    """Validate a run config given as a mapping (the parsed YAML)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config: expected a mapping at the top level, got {type(raw).__name__}")
    extra = set(raw) - _TOP_KEYS
    if extra:
        raise ConfigError(f"config: unknown top-level key(s) {', '.join(sorted(map(str, extra)))}")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed: must be a whole number >= 0, got {seed!r}")
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
    evolution = _evolution(_mapping(raw, "evolution"))
    config = RunConfig(
        space=space,
        fitness=fitness,
        seed=seed,
        fixed=fixed,
        budget=_budget(_mapping(raw, "budget")),
        evolution=evolution,
        baseline=dict(baseline) if baseline else None,
        artifacts=_enum(ArtifactPolicy, "artifacts", raw.get("artifacts", "best")),
        report_to=check_report_to(raw.get("report_to")),
        executor=_executor(_mapping(raw, "executor")),
    )
    return dataclasses.replace(config, raw=resolved(config, raw))


def _plain(settings: Any) -> dict[str, Any]:
    """A settings dataclass as YAML-ready values (enums by value)."""
    def plain(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return value.value
        return _plain(value) if dataclasses.is_dataclass(value) else value

    return {f.name: plain(getattr(settings, f.name)) for f in dataclasses.fields(settings)}


def resolved(config: RunConfig, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The config with every default written out: what the run directory keeps."""
    out = {
        "seed": config.seed,
        "fitness": dict(config.fitness),
        "budget": {k: v for k, v in config.budget.as_dict().items() if v is not None},
        "evolution": _plain(config.evolution),
        "search_space": dict(raw["search_space"]),
        "fixed": dict(config.fixed),
        "artifacts": config.artifacts.value,
        "report_to": list(config.report_to),
        "executor": _plain(config.executor),
    }
    if config.baseline:
        out["baseline"] = dict(config.baseline)
    return out


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to a raw config in place."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r}: expected KEY=VALUE, e.g. evolution.generations=3")
    path, _, text = assignment.partition("=")
    keys = [k for k in path.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"override {assignment!r}: empty key")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {path}: value is not valid YAML ({exc.__class__.__name__})") from None
    node = raw
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {path}: {key} is not a mapping")
        node = child
    node[keys[-1]] = value


def read_yaml(path: Path | str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{where}: {getattr(exc, 'problem', exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None


def load_config(path: Path | str, overrides: list[str] = ()) -> RunConfig:
    raw = read_yaml(path)
    if raw is None:
        raise ConfigError(f"{path}: the config file is empty")
    if isinstance(raw, dict):
        for assignment in overrides:
            apply_override(raw, assignment)
    return parse_config(raw)
