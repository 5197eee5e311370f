"""The contract between the search (``evo``) and the evaluation (``fitness``).

A fitness sees a :class:`Trial` (a resolved hyperparameter config, a budget and a
seed) and answers with a :class:`TrialResult` whose status is one of a closed set.
This module imports nothing heavy, so ``fitness`` can use it without pulling in
DEAP, and ``evo`` can use it without pulling in torch.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, runtime_checkable


class ConfigError(ValueError):
    """A bad run config, search space, data set or model path.

    The message is one line that names the culprit; the CLI prints it and exits 2.
    """


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

    steps: int | None = None
    tokens: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        return {"steps": self.steps, "tokens": self.tokens}


@dataclass(frozen=True)
class Trial:
    """What a fitness is asked to evaluate.

    ``config`` holds the searched genes and the fixed values together, named after
    the Hugging Face fields they set. ``artifact_dir`` is a directory the fitness
    may write into (adapters, logs); it is None when the run keeps no artifacts.
    """

    trial_id: int
    config: Mapping[str, Any]
    budget: Budget
    seed: int
    generation: int = 0
    artifact_dir: Path | None = None


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
    def complete(cls, values: Mapping[str, float], **kw: Any) -> "TrialResult":
        return cls(TrialStatus.COMPLETE, dict(values), **kw)

    @classmethod
    def failed(cls, reason: FailureReason, message: str, **kw: Any) -> "TrialResult":
        return cls(TrialStatus.FAILED, reason=reason, message=message, **kw)

    @property
    def ok(self) -> bool:
        return self.status is TrialStatus.COMPLETE

    def checked(self, objectives: tuple[Objective, ...]) -> "TrialResult":
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


@runtime_checkable
class Fitness(Protocol):
    """An evaluation the loop can call. Implementations live in ``fitness/``.

    ``fingerprint`` identifies the fitness definition (model, data, budget-independent
    settings): results are reused only between runs whose fingerprints match.
    ``evaluate`` may raise; the loop records the exception as a failed trial.
    """

    objectives: tuple[Objective, ...]

    def fingerprint(self) -> str: ...

    def evaluate(self, trial: Trial) -> TrialResult: ...

    def close(self) -> None: ...
