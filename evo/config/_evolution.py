"""The ``evolution`` section of a run config: how the population evolves.

Settings only (no DEAP, no numpy, no strategy code): the strategies in
``evo.strategies`` read them from the config. Rates are probabilities per child or per
gene; fractions are of the trial budget.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from evo.config._fields import check_fields, probability, rule, section
from evo.early_stopping import rung_fractions
from evo.trial import ConfigError

__all__ = [
    "AUTO",
    "Crossover",
    "EarlyStopping",
    "EvolutionSettings",
    "Init",
    "Mode",
    "MultiFidelity",
    "PBTSettings",
    "StopRule",
    "Survival",
    "Surrogate",
]


class Survival(str, enum.Enum):
    """Who survives a generation (the config key `evolution.strategy`, named before the strategies were)."""

    MU_PLUS_LAMBDA = "mu_plus_lambda"  # survivors from parents + offspring: elitist
    MU_COMMA_LAMBDA = "mu_comma_lambda"  # survivors from offspring (+ elites): forgets faster


class Crossover(str, enum.Enum):
    UNIFORM = "uniform"
    BLEND = "blend"


class Surrogate(str, enum.Enum):
    NONE = "none"  # every bred child is evaluated
    TPE = "tpe"  # breed surrogate_candidates x lambda children, evaluate the lambda a TPE density ratio ranks best


class Init(str, enum.Enum):
    """How the initial population is drawn (after any warm-start genomes)."""

    SOBOL = "sobol"  # space-filling: scrambled Sobol points, each gene's range covered evenly
    RANDOM = "random"  # independent uniform draws


class Replacement(str, enum.Enum):
    """Which member a finished child displaces in steady-state mode."""

    WORST = "worst"  # the worst member (mu + 1): fast, but the population soon clusters around the best
    NEAREST = "nearest"  # the member most like the child among those it beats (crowding): keeps niches


class Mode(str, enum.Enum):
    """Which strategy runs; one value per strategy module."""

    GENERATIONAL = "generational"  # breed lambda children, wait for all, select: reproducible
    STEADY_STATE = "steady_state"  # breed a child whenever a worker is free; it replaces the worst
    PBT = "pbt"  # population-based training: members train side by side, the worst copy the best
    MULTI_FIDELITY = "multi_fidelity"  # generational, with successive halving inside each generation


AUTO = "auto"  # evolution.early_stopping: on when the fitness reports validation curves

# Individuals in one generation: past this a single generation would outlast any run (a typo such as
# population_size: 1000000000000 is refused instead of starting).
MAX_INDIVIDUALS = 100_000
# Generations when a run_budget ends the run instead (the most a config may ask for).
MAX_GENERATIONS = 1_000_000


@dataclass(frozen=True)
class MultiFidelity:
    """Successive halving inside each generation (as DEHB): every new individual trains to
    ``min_fidelity`` of the budget, the best 1/eta of each rung continue eta times further
    from their checkpoint, up to the whole budget."""

    eta: int = field(default=3, metadata=rule(ge=2, help="rung growth factor; the best 1/eta go on"))
    min_fidelity: float = field(
        default=1 / 9, metadata=rule(gt=0, lt=1, help="fraction of the budget of the first rung")
    )

    def __post_init__(self) -> None:
        check_fields(self, "evolution.multi_fidelity")

    @property
    def rungs(self) -> tuple[float, ...]:
        """Fractions of the budget, smallest first, ending at 1: min_fidelity * eta^k."""
        return (*rung_fractions(self.min_fidelity, self.eta), 1.0)


class StopRule(str, enum.Enum):
    """How ``early_stopping`` judges a trial's validation curve."""

    HALVING = "halving"  # successive halving at rungs min_fidelity * eta^k: the best 1/eta of each rung go on
    MEDIAN = "median"  # the median of earlier curves at the same fraction of the budget, after warmup


_stop_rule = rule  # inside EarlyStopping's body its field ``rule`` hides the function


@dataclass(frozen=True)
class EarlyStopping:
    """Stopping trials whose validation curve runs worse than earlier trials', plus stopping a
    diverging loss; a stopped trial is recorded as pruned. Needs a fitness that validates during
    training (QLoRA: ``fitness.eval_every``, or the rungs it is judged at).

    ``halving`` (the default) is successive halving as a stopping rule, run asynchronously as
    Optuna's HyperbandPruner runs it: at each rung a trial goes on only while it is among the
    best ``1/eta`` of the trials that reached the rung before it, and with ``brackets`` > 1
    trials take turns at skipping the first rungs (Hyperband's hedge against rungs that rank
    poorly). ``median`` is the median stopping rule (``min_trials``, ``warmup``)."""

    rule: StopRule = field(
        default=StopRule.HALVING,
        metadata=rule(help="halving: successive halving with Hyperband's brackets; median: the median stopping rule"),
    )
    eta: int = field(default=3, metadata=_stop_rule(ge=2, help="halving: the best 1/eta of each rung go on"))
    min_fidelity: float = field(
        default=1 / 9, metadata=_stop_rule(gt=0, lt=1, help="halving: the first rung, as a fraction of the budget")
    )
    brackets: int = field(
        default=3,
        metadata=_stop_rule(
            ge=1, help="halving: trials take turns at skipping 0, 1, ... first rungs (Hyperband); 1: plain halving"
        ),
    )
    min_trials: int = field(
        default=5,
        metadata=_stop_rule(
            ge=1, help="median: completed trials whose curves make a median before anything is stopped"
        ),
    )
    warmup: float = field(
        default=0.25, metadata=_stop_rule(ge=0, lt=1, help="median: no trial is stopped before this fraction")
    )
    loss_ratio: float | None = field(
        default=3.0,
        metadata=_stop_rule(gt=1, help="stop when the training loss exceeds this multiple of its first value"),
    )

    def __post_init__(self) -> None:
        check_fields(self, "evolution.early_stopping")
        if self.rule is StopRule.HALVING and self.brackets > len(self.rungs) + 1:
            raise ConfigError(
                f"evolution.early_stopping.brackets: {self.brackets} is more than the {len(self.rungs)} rungs "
                f"of min_fidelity {self.min_fidelity:g} and eta {self.eta} allow (at most {len(self.rungs) + 1})"
            )

    @property
    def rungs(self) -> tuple[float, ...]:
        """halving: the fractions of the budget a trial is judged at (the whole budget is not one)."""
        return rung_fractions(self.min_fidelity, self.eta)


@dataclass(frozen=True)
class PBTSettings:
    """Population-based training: every ``interval`` of the budget the bottom ``quantile``
    copies a top-quantile member's adapter and optimizer state (exploit) and mutates its
    non-structural hyperparameters (explore)."""

    interval: float = field(
        default=0.25, metadata=rule(ge=0.01, le=0.5, help="fraction of the budget between exploits (100 at most)")
    )
    quantile: float = field(default=0.25, metadata=rule(gt=0, le=0.5, help="share of members that copy a better one"))

    def __post_init__(self) -> None:
        check_fields(self, "evolution.pbt")

    @property
    def ends(self) -> tuple[float, ...]:
        """The fraction of the budget each interval trains up to; the last is 1."""
        n = max(2, round(1 / self.interval))
        return tuple((k + 1) / n for k in range(n))


@dataclass(frozen=True)
class EvolutionSettings:
    """How the population evolves. Read ``planned_generations``, not ``generations``:
    PBT derives its count from ``pbt.interval``."""

    population_size: int = field(
        default=8, metadata=rule(ge=2, le=MAX_INDIVIDUALS, help="mu: members of the population")
    )
    generations: int = field(
        default=10,
        metadata=rule(
            ge=0,
            le=MAX_GENERATIONS,
            help="generations after the initial one (not in pbt mode); with a run_budget and no generations: until it ends",
        ),
    )
    offspring_size: int | None = field(
        default=None,
        metadata=rule(ge=1, le=MAX_INDIVIDUALS, help="lambda: children per generation; null: population_size"),
    )
    strategy: Survival = field(
        default=Survival.MU_PLUS_LAMBDA, metadata=rule(help="survivors from parents + offspring, or offspring only")
    )
    crossover: Crossover = field(
        default=Crossover.BLEND,
        metadata=rule(help="blend: BLX-alpha in each gene's unit interval; uniform: gene by gene"),
    )
    crossover_rate: float = field(default=0.6, metadata=probability("chance a child is bred from two parents"))
    mutation_rate: float = field(
        default=0.5, metadata=probability("chance a crossed child is also mutated (uncrossed ones always are)")
    )
    gene_mutation_rate: float = field(default=0.3, metadata=probability("chance each gene of a mutated child moves"))
    mutation_sigma: float = field(
        default=0.15, metadata=rule(gt=0, le=1, help="Gaussian step, as a fraction of a gene's (log) range")
    )
    tournament_size: int = field(default=3, metadata=rule(ge=1, le=1000, help="contestants per parent selection"))
    elitism: int = field(default=1, metadata=rule(ge=0, help="best individuals that always survive mu_comma_lambda"))
    immigrants: int = field(default=0, metadata=rule(ge=0, help="random newcomers per generation, for diversity"))
    hall_of_fame: int = field(
        default=5,
        metadata=rule(
            ge=1, le=MAX_INDIVIDUALS, help="best individuals kept (the Pareto front with several objectives)"
        ),
    )
    max_consecutive_failures: int = field(default=10, metadata=rule(ge=1, help="stop when the fitness keeps failing"))
    # Steady state by default: on the wide BBOB benchmark (README) it needs fewer evaluations than
    # generations to reach the same result, and no worker waits for the slowest trial of a generation.
    mode: Mode = field(default=Mode.STEADY_STATE, metadata=rule(help="which strategy runs"))
    replacement: Replacement = field(
        default=Replacement.WORST, metadata=rule(help="steady state: the member a finished child displaces")
    )
    # Random by default: on the wide BBOB benchmark's development split a Sobol first population
    # did not reach results sooner (README); it is there for small discrete spaces and for the curious.
    init: Init = field(default=Init.RANDOM, metadata=rule(help="how the first population is drawn"))
    # A prior, as PriorBand's: this share of the initial population is drawn around the run's
    # ``baseline`` config (ordered genes a Gaussian step away, nominal ones mostly kept), the rest as ``init``.
    prior_share: float = field(
        default=0.0, metadata=probability("share of the initial population drawn around the baseline config")
    )
    # Screen bred children with a model of all results so far (evo.search._surrogate). TPE by default: on the BBOB
    # benchmark (README) it needs ~0.7x the evaluations of plain evolution to reach Optuna TPE's result at 100.
    surrogate: Surrogate = field(
        default=Surrogate.TPE,
        metadata=rule(help="screen bred children with a TPE-style model of all results; none: plain GA"),
    )
    surrogate_candidates: int = field(
        default=10, metadata=rule(ge=1, le=1000, help="children bred per evaluated child when a surrogate screens them")
    )
    # 0.1, as Optuna's TPE: on the real-task surrogate benchmark's development seeds and on the wide BBOB
    # benchmark's development split it reached results sooner than 0.2 (README, "How it compares").
    surrogate_gamma: float = field(
        default=0.1, metadata=rule(gt=0, lt=1, help="share of finished trials (at most 25) the model calls good")
    )
    # Set exactly when mode is multi_fidelity (the parser sets the mode when a config has the block).
    multi_fidelity: MultiFidelity | None = field(
        default=None, metadata=rule(help="successive halving inside each generation; true: the defaults")
    )
    # auto by default: successive halving with Hyperband's brackets needed the fewest training tokens to
    # reach the peers' results on the run-budget benchmark's development seeds (docs/benchmarks.md).
    early_stopping: EarlyStopping | str | None = field(
        default=AUTO,
        metadata=rule(
            what="auto, a section (below) or true",
            help="stop trials whose validation curve runs worse than earlier ones; auto: the defaults below in "
            "steady_state when the fitness validates during training; null: never",
        ),
    )
    pbt: PBTSettings = field(default_factory=PBTSettings, metadata=rule(help="used by mode: pbt"))

    def stopping(self, curves: bool) -> EarlyStopping | None:
        """The early stopping a run does with a fitness that reports validation ``curves`` or not:
        ``auto`` is the defaults with curves in steady state (generations keep their promise that a
        seed gives one run on any number of workers, which thresholds from whichever trials finished
        first would break; multi_fidelity and PBT already spend the budget in parts)."""
        if self.early_stopping != AUTO:
            return self.early_stopping  # type: ignore[return-value]  # a section or None, after __post_init__
        return EarlyStopping() if curves and self.mode is Mode.STEADY_STATE else None

    @property
    def lambda_(self) -> int:
        return self.offspring_size or self.population_size

    @property
    def planned_generations(self) -> int:
        """Generations after the initial one; in PBT mode one per interval, so ``len(pbt.ends) - 1``."""
        return len(self.pbt.ends) - 1 if self.mode is Mode.PBT else self.generations

    def __post_init__(self) -> None:
        check_fields(self, "evolution")
        object.__setattr__(self, "early_stopping", _stopping(self.early_stopping))
        if self.strategy is Survival.MU_COMMA_LAMBDA and self.lambda_ < self.population_size:
            raise ConfigError(
                f"evolution.offspring_size: mu_comma_lambda needs offspring_size >= population_size "
                f"({self.lambda_} < {self.population_size})"
            )
        if self.immigrants > self.lambda_:
            raise ConfigError(f"evolution.immigrants: {self.immigrants} is more than the {self.lambda_} offspring")
        if self.elitism > self.population_size:
            raise ConfigError(f"evolution.elitism: {self.elitism} is more than the population ({self.population_size})")
        if self.multi_fidelity is not None and self.mode in (Mode.STEADY_STATE, Mode.PBT):
            raise ConfigError(
                f"evolution.multi_fidelity: works with mode: generational, not {self.mode.value} "
                "(PBT already trains in intervals)"
            )
        if (self.multi_fidelity is not None) != (self.mode is Mode.MULTI_FIDELITY):
            raise ConfigError(
                f"evolution.mode: {self.mode.value} needs evolution.multi_fidelity "
                f"{'set (true for the defaults)' if self.multi_fidelity is None else 'left out'}; "
                "a config with the block gets mode multi_fidelity from parse_config"
            )
        if self.mode is Mode.STEADY_STATE and self.strategy is Survival.MU_COMMA_LAMBDA:
            raise ConfigError(
                "evolution.strategy: steady_state replaces the worst member, which is mu_plus_lambda; "
                "mu_comma_lambda needs generations"
            )
        if self.replacement is not Replacement.WORST and self.mode is not Mode.STEADY_STATE:
            raise ConfigError(
                f"evolution.replacement: {self.replacement.value} is for mode: steady_state, "
                f"not {self.mode.value} (generations select their survivors together)"
            )


def _stopping(value: object) -> EarlyStopping | str | None:
    """``evolution.early_stopping`` as given: auto, a section, true (the defaults), or null/false (off)."""
    if value == AUTO:
        return AUTO
    if isinstance(value, str):
        raise ConfigError(f"evolution.early_stopping: expected auto, a mapping, true or null, got {value!r}")
    return section(EarlyStopping, value, "evolution.early_stopping", optional=True)
