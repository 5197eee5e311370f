"""A read-only view of a stored run, in the shapes plots and reports need."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evo.config import Mode, RunConfig, parse_config
from evo.storage import BASELINE_GENERATION, IndividualRecord, RunStore, TrialRecord
from evo.trial import Direction, Objective


@dataclass(frozen=True)
class Evaluated:
    """One individual of one generation with the trial that scored it."""

    generation: int
    individual: IndividualRecord
    trial: TrialRecord
    cached: bool  # its trial was run earlier (another generation or an earlier sibling)


@dataclass(frozen=True)
class RunData:
    run_dir: Path
    config: RunConfig
    objectives: tuple[Objective, ...]
    trials: list[TrialRecord]  # every trial run here, in the order they started
    evaluated: list[Evaluated]  # every individual of every generation, in order
    populations: dict[int, list[IndividualRecord]]  # survivors per finished generation
    stats: list[dict[str, Any]]
    baseline: TrialRecord | None
    meta: dict[str, Any]

    @property
    def objective(self) -> Objective:
        return self.objectives[0]

    @property
    def minimize(self) -> bool:
        return self.objective.direction is Direction.MINIMIZE

    @property
    def generations(self) -> list[int]:
        return sorted({e.generation for e in self.evaluated})

    def value(self, trial: TrialRecord, objective: Objective | None = None) -> float | None:
        """The trial's value, or None unless it completed the whole budget (a rung's or a
        pruned trial's value does not compare with the others)."""
        name = (objective or self.objective).name
        return trial.values.get(name) if self.scored(trial) else None

    def scored_value(self, trial: TrialRecord, objective: Objective | None = None) -> float:
        """``value`` of a trial known to be scored (so is an ok baseline: it runs on the whole
        budget). A scored trial has every objective: ``TrialResult.checked`` fails it otherwise."""
        value = self.value(trial, objective)
        assert value is not None, f"trial {trial.id} is not scored"
        return value

    @staticmethod
    def scored(trial: TrialRecord) -> bool:
        return trial.ok and trial.full

    def member_value(self, trial: TrialRecord) -> float | None:
        """A population member's value for per-generation plots: as ``value``, except in a
        PBT run, whose generation g is interval g, trained by every member to the same point."""
        if self.config.evolution.mode is Mode.PBT and trial.ok:
            return trial.values.get(self.objective.name)
        return self.value(trial)

    def better(self, a: float, b: float) -> bool:
        return a < b if self.minimize else a > b


def load_run(run_dir: Path | str) -> RunData:
    with RunStore.read(run_dir) as store:
        config = parse_config(store.meta("config"))
        trials = [t for t in store.trials() if t.generation >= BASELINE_GENERATION]
        by_id = {t.id: t for t in store.trials()}
        stored = store.meta("objectives") or []
        objectives = tuple(Objective(o["name"], Direction(o["direction"])) for o in stored)
        if not objectives:
            names = next((list(t.values) for t in trials if t.ok), ["objective"])
            objectives = tuple(Objective(n) for n in names)
        evaluated, seen, baseline = [], set(), None
        for ind in store.individuals():
            if ind.trial_id is None:
                continue
            trial = by_id[ind.trial_id]
            if ind.generation == BASELINE_GENERATION:
                baseline = trial
                seen.add(trial.id)
                continue
            cached = trial.generation != ind.generation or trial.id in seen
            seen.add(trial.id)
            evaluated.append(Evaluated(ind.generation, ind, trial, cached))
        populations = {g: store.population(g) for g in store.finished_generations()}
        meta = {
            key: store.meta(key)
            for key in ("created_at", "fingerprint", "warm_started_from", "environment", "best_artifacts")
        }
        return RunData(
            run_dir=Path(run_dir),
            config=config,
            objectives=objectives,
            trials=trials,
            evaluated=evaluated,
            populations=populations,
            stats=store.generation_stats(),
            baseline=baseline,
            meta=meta,
        )
