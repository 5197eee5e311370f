"""Evaluating individuals: the cache, the store, failures and artifacts.

An individual whose config (fixed values and genes) was already evaluated under the
same fitness fingerprint reuses that trial instead of training again. Every real
evaluation is committed to the store as RUNNING before it starts and with its outcome
as soon as it ends, so a killed driver loses only what was in flight.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from evo.config import ArtifactPolicy
from evo.space import canonical
from evo.store import RunStore, TrialRecord
from evo.trial import Budget, FailureReason, Fitness, Objective, Trial, TrialResult


class RunAborted(RuntimeError):
    """The fitness failed too many times in a row for the run to be worth continuing."""


def run_fingerprint(fitness: Fitness, budget: Budget) -> str:
    """What makes two evaluations of one config comparable: the fitness definition and the budget."""
    text = json.dumps({"fitness": fitness.fingerprint(), "budget": budget.as_dict()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def trial_seed(master_seed: int, generation: int, slot: int) -> int:
    """Per-individual seed from the master seed (numpy SeedSequence), stable across resumes."""
    seq = np.random.SeedSequence(master_seed, spawn_key=(generation + 1, 1, slot))
    return int(seq.generate_state(1, dtype=np.uint32)[0])


def penalty(objectives: tuple[Objective, ...]) -> tuple[float, ...]:
    """The fitness a failed individual carries in selection: the worst possible value
    for every objective (+inf when minimised, -inf when maximised). It loses every
    tournament against a completed individual and never enters the hall of fame."""
    return tuple(-o.weight * float("inf") for o in objectives)


@dataclass
class Evaluator:
    """Turns individuals into trials for one run."""

    store: RunStore
    fitness: Fitness
    fingerprint: str
    budget: Budget
    master_seed: int
    config_of: Callable[[dict[str, Any]], dict[str, Any]]
    artifacts: ArtifactPolicy = ArtifactPolicy.BEST
    max_consecutive_failures: int = 10
    on_trial: Callable[[TrialRecord, bool], None] = lambda record, cached: None
    consecutive_failures: int = 0
    evaluations: int = 0
    cache_hits: int = 0
    last_failures: list[str] = field(default_factory=list)

    def evaluate(self, individual_id: int, genome: dict[str, Any], generation: int, slot: int) -> TrialRecord:
        config = self.config_of(genome)
        key = canonical(config)
        cached = self.store.find_reusable(self.fingerprint, key)
        if cached is not None:
            self.store.link(individual_id, cached.id)
            self.cache_hits += 1
            self.on_trial(cached, True)
            return cached

        seed = trial_seed(self.master_seed, generation, slot)
        trial_id = self.store.start_trial(
            fingerprint=self.fingerprint, config_key=key, config=config, generation=generation, seed=seed
        )
        artifact_dir = self._artifact_dir(trial_id)
        trial = Trial(trial_id, config, self.budget, seed, generation, artifact_dir)
        try:
            result = self.fitness.evaluate(trial)
            if not isinstance(result, TrialResult):
                raise TypeError(f"fitness returned {type(result).__name__}, not a TrialResult")
        except Exception as exc:  # a failing trial never stops the run
            last = traceback.extract_tb(exc.__traceback__)[-1:]
            where = f" (at {Path(last[0].filename).name}:{last[0].lineno})" if last else ""
            result = TrialResult.failed(FailureReason.EXCEPTION, f"{type(exc).__name__}: {exc}{where}")
        result = result.checked(self.fitness.objectives)
        self.store.finish_trial(trial_id, result, individual_id)
        record = self.store.trial(trial_id)
        self.evaluations += 1
        self._keep_artifacts(record, artifact_dir)
        self.on_trial(record, False)
        self._count_failure(record)
        return record

    def _count_failure(self, record: TrialRecord) -> None:
        if record.ok:
            self.consecutive_failures = 0
            return
        self.consecutive_failures += 1
        self.last_failures = (self.last_failures + [f"{record.reason.value}: {record.message}"])[-3:]
        if self.consecutive_failures >= self.max_consecutive_failures:
            raise RunAborted(
                f"{self.consecutive_failures} evaluations in a row failed; last: {self.last_failures[-1]}"
            )

    # -- artifacts --------------------------------------------------------------------
    def _artifact_dir(self, trial_id: int) -> Path | None:
        if self.store.run_dir is None or self.artifacts is ArtifactPolicy.NONE:
            return None
        return self.store.run_dir / "trials" / str(trial_id)

    def _keep_artifacts(self, record: TrialRecord, artifact_dir: Path | None) -> None:
        """Under the 'best' policy only the best trial's artifacts survive, in RUN_DIR/best."""
        if artifact_dir is None or self.artifacts is ArtifactPolicy.ALL or not artifact_dir.exists():
            return
        if record.ok and self._is_new_best(record):
            best_dir = self.store.run_dir / "best"
            staging = best_dir.with_name("best.new")
            shutil.rmtree(staging, ignore_errors=True)
            artifact_dir.rename(staging)
            shutil.rmtree(best_dir, ignore_errors=True)
            staging.rename(best_dir)
            self.store.set_meta("best_artifacts", {"trial_id": record.id, "path": str(best_dir.resolve())})
        else:
            shutil.rmtree(artifact_dir, ignore_errors=True)
        parent = artifact_dir.parent
        if parent.exists() and not any(parent.iterdir()):
            parent.rmdir()

    def _is_new_best(self, record: TrialRecord) -> bool:
        objective = self.fitness.objectives[0]
        holder = self.store.meta("best_artifacts")
        if holder is None:
            return True
        current = self.store.trial(holder["trial_id"]).values.get(objective.name)
        value = record.values[objective.name]
        return current is None or (value * objective.weight > current * objective.weight)
