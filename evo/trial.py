"""The contract between the search (``evo``) and the evaluation (``fitness``).

A fitness sees a :class:`Trial` (a resolved hyperparameter config, a budget and a
seed) and answers with a :class:`TrialResult` whose status is one of a closed set.
This module imports nothing heavy, so ``fitness`` can use it without pulling in
DEAP, and ``evo`` can use it without pulling in torch.
"""

from __future__ import annotations

import abc
import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, TypedDict, runtime_checkable

from evo._declarations import GeneDecl, ValueKind, check_value, rule, why_refused
from evo._errors import ConfigError, Deprecated, renamed

__all__ = [
    "Budget",
    "ConfigError",
    "Deprecated",
    "Direction",
    "EarlyStop",
    "FailureReason",
    "Fitness",
    "FitnessBase",
    "GeneDecl",
    "Objective",
    "Plan",
    "PlanShape",
    "Trial",
    "TrialResult",
    "TrialStatus",
    "ValueKind",
    "check_value",
    "renamed",
    "why_refused",
]


class TrialStatus(str, enum.Enum):
    """Where an evaluation ended. RUNNING exists only in the store, while in flight."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    PRUNED = "pruned"


class FailureReason(str, enum.Enum):
    """Why a FAILED trial failed."""

    EXCEPTION = "exception"
    DIVERGED = "diverged"  # NaN / inf loss or objective
    OOM = "oom"
    TIMEOUT = "timeout"
    KILLED = "killed"  # the process running it died (signal, native crash, driver killed)


class Direction(str, enum.Enum):
    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"


@dataclass(frozen=True)
class Objective:
    """One objective a fitness reports, e.g. ``Objective("val_perplexity")``."""

    name: str
    direction: Direction = Direction.MINIMIZE

    @property
    def weight(self) -> float:
        """DEAP-style weight: -1 minimises, +1 maximises."""
        return -1.0 if self.direction is Direction.MINIMIZE else 1.0


@dataclass(frozen=True)
class Budget:
    """Training compute allowed to every genome of a run; the same for all of them.

    ``steps`` counts optimizer steps, ``tokens`` counts training tokens; a fitness
    honours whichever is set (tokens win when both are).
    """

    steps: int | None = field(default=None, metadata=rule(ge=1, help="optimizer steps per genome"))
    tokens: int | None = field(default=None, metadata=rule(ge=1, help="training tokens per genome (wins over steps)"))

    def as_dict(self) -> dict[str, int | None]:
        return {"steps": self.steps, "tokens": self.tokens}


@dataclass(frozen=True)
class EarlyStop:
    """When a fitness should stop a trial before its budget and answer PRUNED.

    ``thresholds`` are ``(fraction of the budget, value)`` pairs sorted by fraction, for
    the first objective: at an intermediate evaluation at fraction f, a trial whose value
    is worse than the threshold of the largest fraction <= f is stopped (the driver puts
    there what earlier trials reached: ``evo.early_stopping._rules``). With
    ``loss_ratio``, a training loss above that multiple of the first step's loss, or a
    NaN/inf loss, stops the trial as diverged.
    """

    direction: Direction = Direction.MINIMIZE
    thresholds: tuple[tuple[float, float], ...] = ()
    loss_ratio: float | None = None

    def threshold_at(self, fraction: float) -> float | None:
        """The threshold in force at ``fraction`` of the budget (None before the first one)."""
        current = None
        for at, value in self.thresholds:
            if at > fraction + 1e-9:
                break
            current = value
        return current

    def prunes(self, fraction: float, value: float) -> bool:
        """True when ``value`` at ``fraction`` of the budget is worse than the threshold there."""
        threshold = self.threshold_at(fraction)
        if threshold is None:
            return False
        if not math.isfinite(value):
            return True
        return value > threshold if self.direction is Direction.MINIMIZE else value < threshold

    def diverged(self, first_loss: float, loss: float) -> bool:
        """True when the training loss is NaN/inf or past ``loss_ratio`` times its first value."""
        if self.loss_ratio is None:
            return False
        return not math.isfinite(loss) or loss > self.loss_ratio * first_loss


@dataclass(frozen=True)
class Trial:
    """What a fitness is asked to evaluate.

    ``config`` holds the searched genes and the fixed values together, named after
    the Hugging Face fields they set. ``artifact_dir`` is a directory the fitness
    may write into (adapters, logs); it is None when the run keeps no artifacts.

    Partial training, for multi-fidelity runs and population-based training:
    ``fidelity`` is the fraction of ``budget`` to train up to, counted from step 0 of
    a schedule that always spans the whole budget, so that a config trained to 1/3 and
    continued to 1 ends where one trained to 1 in one go does. ``resume_from`` is a
    checkpoint an earlier trial wrote (adapter, optimizer and scheduler state, data
    position, curves): training continues from its step with this trial's
    hyperparameters; genes listed in the fitness's ``structural_genes`` must match it.
    ``checkpoint_dir`` asks the fitness to write such a checkpoint when it ends.

    Metrics a fitness reports for such trials: ``steps`` (the step reached),
    ``budget_steps`` (steps at fidelity 1), ``start_step`` (where it resumed),
    ``train_tokens`` (tokens trained by this trial only, so compute adds up across
    trials), and curves that continue the checkpoint's.
    """

    trial_id: int
    config: Mapping[str, Any]
    budget: Budget
    seed: int
    generation: int = 0
    artifact_dir: Path | None = None
    fidelity: float = 1.0
    resume_from: Path | None = None
    checkpoint_dir: Path | None = None
    early_stop: EarlyStop | None = None


@dataclass(frozen=True)
class TrialResult:
    """What a fitness answers.

    ``values`` maps objective names to numbers; ``metrics`` holds anything else worth
    keeping (loss curve, tokens/s, peak memory, ...), JSON-serialisable.
    ``applied_config`` is the config as really applied when it differs from the
    genome (e.g. a learning rate scaled with batch size).
    """

    status: TrialStatus
    values: Mapping[str, float] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    reason: FailureReason | None = None
    message: str = ""
    applied_config: Mapping[str, Any] | None = None

    @classmethod
    def complete(cls, values: Mapping[str, float], **kw: Any) -> TrialResult:
        return cls(TrialStatus.COMPLETE, dict(values), **kw)

    @classmethod
    def failed(cls, reason: FailureReason, message: str, **kw: Any) -> TrialResult:
        return cls(TrialStatus.FAILED, reason=reason, message=message, **kw)

    @classmethod
    def pruned(cls, values: Mapping[str, float], message: str, **kw: Any) -> TrialResult:
        """Stopped early: ``values`` are the last intermediate ones, not comparable with complete
        trials; ``reason`` is DIVERGED when the loss diverged, None for the median rule."""
        return cls(TrialStatus.PRUNED, dict(values), message=message, **kw)

    @property
    def ok(self) -> bool:
        return self.status is TrialStatus.COMPLETE

    def checked(self, objectives: tuple[Objective, ...]) -> TrialResult:
        """Turn a COMPLETE result with a missing, None, NaN or inf objective into a failure.

        A non-finite number is never a fitness: it is a diverged trial.
        """
        if not self.ok:
            return self
        for obj in objectives:
            value = self.values.get(obj.name)
            if value is None:
                return TrialResult.failed(
                    FailureReason.EXCEPTION,
                    f"fitness returned no value for objective {obj.name!r}",
                    metrics=self.metrics,
                )
            try:
                finite = math.isfinite(float(value))
            except (TypeError, ValueError):
                finite = False
            if not finite:
                return TrialResult.failed(
                    FailureReason.DIVERGED,
                    f"objective {obj.name!r} is {value!r}",
                    metrics=self.metrics,
                )
        return self


class PlanShape(TypedDict):
    """One memory shape a run can draw, in a :class:`Plan`."""

    shape: str  # what it is, e.g. "4 x 512, checkpointing" (micro-batch x sequence length)
    peak_mb: float  # estimated peak at the genes' micro-batch, the resident model included
    parts: str  # its largest parts, for the reader
    micro_batch: list[int | None]  # per device of the plan: the micro-batch it trains at; None: not even 1 fits


class Plan(TypedDict):
    """What a fitness says a run of it would cost, before it starts (``evo plan``). Plain data:
    the engine only formats it. Per-device lists follow ``devices``."""

    about: list[str]  # what the numbers are for: the model, where its shape was read, the dtype, the device
    tokens_per_trial: list[int]  # [fewest, most] training tokens of a whole-budget trial over the genes' values
    seconds_per_trial: list[float] | None  # [fewest, most] on the run's device from measured speeds; None: unmeasured
    devices: list[str]  # the memory table's columns: the run's device when its room is known, then GPU sizes
    shapes: list[PlanShape]  # each distinct memory shape the genes can give, worst case over the other genes
    cohort: list[int | None]  # per device: trials of the baseline's shape (else the largest) trained at once
    notes: list[str]  # what else the reader should know


@runtime_checkable
class Fitness(Protocol):
    """An evaluation the loop can call. Implementations live in ``fitness/``; subclass
    :class:`FitnessBase` to get the defaults of everything but the three essentials.

    ``fingerprint`` identifies the fitness definition (model, data, budget-independent
    settings): results are reused only between runs whose fingerprints match.
    ``evaluate`` may raise; the loop records the exception as a failed trial, and turns a
    COMPLETE result with a missing or non-finite objective into a failure (the fitness
    need not check). The rest the engine reads as declared, without probing:

    - ``structural_genes``: config keys a trial continuing a checkpoint cannot change
      (e.g. the LoRA rank); population-based training leaves them alone.
    - ``intermediate_values``: whether trials validate during training and check
      ``trial.early_stop`` there, which early stopping needs (on by default in steady state
      when this is true).
    - ``genes``: the config keys the fitness reads and what it accepts; empty means
      it reads anything (toy fitnesses), so nothing can be checked up front.
    - ``describe()``: environment for the report (device, library versions).
    - ``export_sections(config)``: the config split into sections to paste into the
      training code (for QLoRA: TrainingArguments, LoraConfig, BitsAndBytesConfig).
      A static method: ``evo best`` calls it without building the fitness.
    - ``close()``: release workers; called once or more, so it must be idempotent.
    - ``batch_capacity`` and ``evaluate_batch(trials)``: how many trials the fitness can
      evaluate together (e.g. a cohort of QLoRA trials on one shared base), and the call that
      does it, answering one result per trial, in order. With more than 1, the local
      executor queues that many submitted trials and hands them over at once. Evaluating
      together must not change a trial's result: each is the one ``evaluate`` would give.
    - ``visible_devices()`` and ``for_device(label)``: the devices this machine shows the
      fitness (labels as ``CUDA_VISIBLE_DEVICES`` takes them; empty: none to pin to), and a
      fitness whose trials run on that device alone. With ``executor.devices`` the local
      executor builds one per device and runs them side by side, each from its own thread,
      and closes them at the end; ``auto`` means ``visible_devices()``.
    - ``plan(spec, genes, budget, baseline)``: what a run would cost before it starts, as a
      :class:`Plan` (``evo plan``); ``genes`` holds every value the run can give each gene.
      A static method: it reads the fitness's ``spec`` without building the fitness (no
      data read, no worker); None when the fitness cannot say. Raises ConfigError as
      building it would.
    - ``check_trials(genes, budget)``: raise ConfigError, before anything runs, when the run's
      trials could not give a meaningful result (``genes`` as for ``plan``; the QLoRA fitness:
      data too small for one training batch of the smallest trial, or for a validation set).
    """

    objectives: tuple[Objective, ...]
    structural_genes: frozenset[str]
    intermediate_values: bool
    genes: Mapping[str, GeneDecl]
    batch_capacity: int

    def fingerprint(self) -> str: ...

    def evaluate(self, trial: Trial) -> TrialResult: ...

    def evaluate_batch(self, trials: Sequence[Trial]) -> list[TrialResult]: ...

    def describe(self) -> dict[str, Any]: ...

    def export_sections(self, config: Mapping[str, Any]) -> dict[str, dict[str, Any]]: ...

    def close(self) -> None: ...

    def visible_devices(self) -> tuple[str, ...]: ...

    def for_device(self, label: str) -> Fitness: ...

    def plan(
        self,
        spec: Mapping[str, Any],
        genes: Mapping[str, Sequence[Any]],
        budget: Budget,
        baseline: Mapping[str, Any] | None,
    ) -> Plan | None: ...

    def check_trials(self, genes: Mapping[str, Sequence[Any]], budget: Budget) -> None: ...


class FitnessBase(abc.ABC):
    """The defaults of :class:`Fitness`'s optional capabilities, so that a fitness writes
    only what it has: ``objectives``, ``fingerprint`` and ``evaluate``."""

    objectives: tuple[Objective, ...]
    structural_genes: frozenset[str] = frozenset()
    intermediate_values: bool = False
    genes: Mapping[str, GeneDecl] = MappingProxyType({})
    batch_capacity: int = 1  # trials evaluate_batch takes at once; 1: the executor calls evaluate

    @abc.abstractmethod
    def fingerprint(self) -> str: ...

    @abc.abstractmethod
    def evaluate(self, trial: Trial) -> TrialResult: ...

    def evaluate_batch(self, trials: Sequence[Trial]) -> list[TrialResult]:
        """One after another; a fitness that can do better together overrides it (and ``batch_capacity``)."""
        return [self.evaluate(trial) for trial in trials]

    def describe(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def export_sections(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Everything in one section, ``other``: a fitness that sets no library's fields."""
        return {"other": dict(config)} if config else {}

    def close(self) -> None:  # noqa: B027 - optional: most fitnesses hold nothing to release
        pass

    def check_trials(self, genes: Mapping[str, Sequence[Any]], budget: Budget) -> None:  # noqa: B027
        """Nothing to check: every trial of a fitness that declares nothing can run."""

    def visible_devices(self) -> tuple[str, ...]:
        """None: ``executor.devices: auto`` runs one worker, on this fitness itself."""
        return ()

    def for_device(self, label: str) -> Fitness:
        """The fitness itself: one that holds no device answers every device's trials. The
        executor then calls it from one thread per device, so it must be thread-safe (as
        with ``executor.workers``); a fitness that trains on a device returns its own copy."""
        return self

    @staticmethod
    def plan(
        spec: Mapping[str, Any],
        genes: Mapping[str, Sequence[Any]],
        budget: Budget,
        baseline: Mapping[str, Any] | None,
    ) -> Plan | None:
        """None: a fitness that knows no cost before it runs (``evo plan`` then counts trials only)."""
        return None
