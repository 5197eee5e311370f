"""Evaluating individuals: the cache, the store, failures and artifacts.

An individual whose config (fixed values and genes) was already evaluated under the
same fitness fingerprint reuses that trial instead of training again. Every real
evaluation is committed to the store as RUNNING when it is handed to the executor and
with its outcome as soon as it ends, so a killed driver loses only what was in flight.

Trials run on an executor (see :mod:`evo.executors`), up to its capacity at once;
results are committed in completion order. Two identical configs in flight at once
are trained once: the second waits for the first's result.

A job may train part of the budget (``fidelity``), continue another trial's checkpoint
and leave one of its own (multi-fidelity runs, PBT); where checkpoints and artifacts
live and which are kept is :class:`evo.storage.RunFiles`'s business. A trial at
fidelity f is cached under the fingerprint ``<run fingerprint>@f``.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evo.config import ArtifactPolicy
from evo.early_stopping import HalvingRule, MedianRule
from evo.evaluation._spending import DRIVER_SECONDS, RunBudgetSpent, Spending
from evo.executors import Executor
from evo.space import canonical
from evo.storage import RunFiles, RunStore, TrialRecord
from evo.trial import Budget, Fitness, Objective, Trial, TrialStatus


class RunAborted(RuntimeError):
    """The run cannot go on: the fitness failed too many times in a row, or the disk is full.
    What run.db holds is kept; the message says why and what."""


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


@dataclass(frozen=True)
class Job:
    """An individual to evaluate; ``generation`` and ``slot`` fix its trial seed.

    ``resume_from`` is a trial whose checkpoint this one continues (trained from scratch
    when that checkpoint is gone); ``checkpoint`` keeps this trial's end state for a
    later one. ``cacheable`` is False when the outcome depends on more than the config
    (a PBT member continues a history of its own).
    """

    individual_id: int
    genome: dict[str, Any]
    generation: int
    slot: int
    fidelity: float = 1.0
    resume_from: int | None = None
    checkpoint: bool = False
    cacheable: bool = True


@dataclass(frozen=True)
class Outcome:
    """An individual's trial, either just finished or reused from the cache."""

    individual_id: int
    record: TrialRecord
    cached: bool


@dataclass(frozen=True)
class _InFlight:
    job: Job
    trial_id: int
    key: str
    artifact_dir: Path | None


@dataclass
class Evaluator:
    """Turns individuals into trials for one run."""

    store: RunStore
    executor: Executor
    objectives: tuple[Objective, ...]
    fingerprint: str
    budget: Budget
    master_seed: int
    config_of: Callable[[dict[str, Any]], dict[str, Any]]
    artifacts: ArtifactPolicy = ArtifactPolicy.BEST
    max_consecutive_failures: int = 10
    on_trial: Callable[[TrialRecord, bool], None] = lambda record, cached: None
    pruner: MedianRule | HalvingRule | None = None
    spending: Spending | None = None  # the run budget's; None: no limit
    consecutive_failures: int = 0
    evaluations: int = 0
    cache_hits: int = 0
    last_failures: list[str] = field(default_factory=list)
    _in_flight: dict[int, _InFlight] = field(default_factory=dict)  # by executor ticket
    _waiting: dict[str, list[Job]] = field(default_factory=dict)  # by config key in flight
    files: RunFiles = field(init=False)

    def __post_init__(self) -> None:
        self.files = RunFiles(self.store, self.artifacts)
        if self.spending is None:
            self.spending = Spending(None, self.budget)
        if self.pruner is not None:
            for trial in self.store.trials():
                if trial.fingerprint.startswith(self.fingerprint):
                    self.pruner.add(trial)

    def fingerprint_at(self, fidelity: float) -> str:
        """Trials at part of the budget are only ever reused at that same part."""
        return self.fingerprint if fidelity >= 1 else f"{self.fingerprint}@{fidelity:.6g}"

    def evaluate_batch(self, jobs: Iterable[Job]) -> dict[int, TrialRecord]:
        """Evaluate jobs, as many at once as the executor runs; the trial of each individual."""
        pending, records = deque(jobs), {}
        while pending or self._in_flight:
            while pending and self.has_room() and self.may_start(pending[0]):
                outcome = self.submit(pending.popleft())
                if outcome is not None:
                    records[outcome.individual_id] = outcome.record
            if self._in_flight:
                records.update((o.individual_id, o.record) for o in self.next_finished())
            elif pending:  # nothing left in flight, and the run budget pays for no more
                raise RunBudgetSpent(f"{len(pending)} trial(s) left unstarted")
        return records

    def may_start(self, job: Job | None = None) -> bool:
        """Whether the run budget pays for ``job`` (None: a new whole-budget trial)."""
        assert self.spending is not None
        return self.spending.allows(self._added(job) if job is not None else 1.0)

    def _resumed_fidelity(self, record: TrialRecord) -> float:
        return self.store.trial(record.resumed_from).fidelity if record.resumed_from is not None else 0.0

    def _added(self, job: Job) -> float:
        """The fraction of the budget ``job`` trains: its fidelity, less the checkpoint's it continues."""
        if job.resume_from is None:
            return job.fidelity
        return job.fidelity - self.store.trial(job.resume_from).fidelity

    @property
    def busy(self) -> bool:
        return bool(self._in_flight)

    def has_room(self) -> bool:
        return len(self._in_flight) < self.executor.capacity

    def submit(self, job: Job) -> Outcome | None:
        """Start a trial for ``job``; returns its outcome at once when the cache holds one.

        A trial is started (RUNNING in the store) only here, so its duration is the
        time it really ran, not the time it queued.
        """
        config = self.config_of(job.genome)
        key = canonical(config)
        fingerprint = self.fingerprint_at(job.fidelity)
        cached = self.store.find_reusable(fingerprint, key) if job.cacheable else None
        if cached is not None:
            self.store.link(job.individual_id, cached.id)
            self.cache_hits += 1
            self.on_trial(cached, True)
            return Outcome(job.individual_id, cached, cached=True)
        if not job.cacheable:
            key = f"{key}#individual={job.individual_id}"  # never merged with another member's trial
        if any(flight.key == key for flight in self._in_flight.values()):
            self._waiting.setdefault(key, []).append(job)
            return None
        seed = trial_seed(self.master_seed, job.generation, job.slot)
        resume_dir = self.files.checkpoint_dir(job.resume_from) if job.resume_from is not None else None
        if resume_dir is not None and not resume_dir.exists():
            resume_dir = None  # gone (deleted, or the run moved): train from the start instead
        trial_id = self.store.start_trial(
            fingerprint=fingerprint,
            config_key=key,
            config=config,
            generation=job.generation,
            seed=seed,
            fidelity=job.fidelity,
            resumed_from=job.resume_from if resume_dir else None,
        )
        artifact_dir = self.files.artifact_dir(trial_id) if job.fidelity >= 1 else None
        trial = Trial(
            trial_id,
            config,
            self.budget,
            seed,
            job.generation,
            artifact_dir,
            fidelity=job.fidelity,
            resume_from=resume_dir,
            checkpoint_dir=self.files.checkpoint_dir(trial_id) if job.checkpoint else None,
            early_stop=self.pruner.early_stop(job.individual_id) if self.pruner is not None else None,
        )
        ticket = self.executor.submit(trial)
        self._in_flight[ticket] = _InFlight(job, trial_id, key, artifact_dir)
        assert self.spending is not None
        self.spending.started(trial_id, self._added(job) if resume_dir is not None else job.fidelity)
        return None

    def next_finished(self) -> list[Outcome]:
        """Wait for the next trial to finish and commit it; also the outcomes of jobs that
        waited for the same config (reused, or started anew after a transient failure)."""
        ticket, result = self.executor.wait()
        flight = self._in_flight.pop(ticket)
        result = result.checked(self.objectives)
        self.store.finish_trial(flight.trial_id, result, flight.job.individual_id)
        record = self.store.trial(flight.trial_id)
        self.evaluations += 1
        assert self.spending is not None
        self.spending.finished(record, record.fidelity - self._resumed_fidelity(record))
        if self.spending.limits is not None and self.spending.limits.hours is not None:
            self.store.set_meta(DRIVER_SECONDS, self.spending.driver_seconds())
        if self.pruner is not None:
            self.pruner.add(record)
        self.files.keep_artifacts(record, flight.artifact_dir, self.objectives[0])
        self.on_trial(record, False)
        outcomes = [Outcome(flight.job.individual_id, record, cached=False)]
        for job in self._waiting.pop(flight.key, []):
            outcome = self.submit(job)
            if outcome is not None:
                outcomes.append(outcome)
        self._count_failure(record)
        return outcomes

    def _count_failure(self, record: TrialRecord) -> None:
        if record.ok or record.status is TrialStatus.PRUNED:  # a stopped trial is the fitness working
            self.consecutive_failures = 0
            return
        self.consecutive_failures += 1
        self.last_failures = (
            self.last_failures + [f"{record.reason.value if record.reason else record.status.value}: {record.message}"]
        )[-3:]
        if self.consecutive_failures >= self.max_consecutive_failures:
            raise RunAborted(f"{self.consecutive_failures} evaluations in a row failed; last: {self.last_failures[-1]}")
