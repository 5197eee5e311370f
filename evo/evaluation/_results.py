"""What a run found, read from the store alone: no strategy, fitness or executor needed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deap import tools

from evo.search import deap_types, hall_of_fame, logbook
from evo.storage import BASELINE_GENERATION, RunStore, TrialRecord
from evo.trial import Direction, Objective

if TYPE_CHECKING:
    from evo.evaluation._evaluator import Evaluator


@dataclass(frozen=True)
class RunResult:
    """What a run found. ``best`` holds trial configs (fixed values and genes), best first;
    for several objectives it is the Pareto front."""

    best: list[dict[str, Any]]
    best_trials: list[TrialRecord]
    history: tools.Logbook
    evaluations: int
    cache_hits: int
    run_dir: Path | None


def build_result(
    store: RunStore, objectives: Sequence[Objective], hof_size: int, evaluator: Evaluator | None = None
) -> RunResult:
    """The best trials of a run: whole-budget completed trials of its individuals (the
    baseline never counts), in a hall of fame, or the Pareto front for several objectives."""
    fitness_cls, individual_cls = deap_types(tuple(objectives))
    hof = hall_of_fame(hof_size, len(objectives) > 1)
    candidates = []
    for rec in store.individuals():
        if rec.generation == BASELINE_GENERATION or rec.trial_id is None:
            continue
        trial = store.trial(rec.trial_id)
        if not trial.ok or not trial.full:  # a partial budget's value does not compare
            continue
        ind = individual_cls(trial.config)
        ind.trial_id = trial.id
        ind.fitness = fitness_cls(tuple(trial.values[o.name] for o in objectives))
        candidates.append(ind)
    if candidates:
        hof.update(candidates)
    best_trials = [store.trial(ind.trial_id) for ind in hof]
    if evaluator is not None:
        evaluations, cache_hits = evaluator.evaluations, evaluator.cache_hits
    else:
        evaluations, cache_hits = sum(1 for t in store.trials() if t.generation >= BASELINE_GENERATION), 0
    return RunResult(
        best=[t.config for t in best_trials],
        best_trials=best_trials,
        history=logbook(store.generation_stats()),
        evaluations=evaluations,
        cache_hits=cache_hits,
        run_dir=store.run_dir,
    )


def stored_objectives(store: RunStore) -> tuple[Objective, ...]:
    """The run's objectives, from the names stored with it (no fitness is built); a run written
    before they were stored: the names of its first completed trial's values."""
    stored = store.meta("objectives")
    if stored:
        return tuple(Objective(o["name"], Direction(o["direction"])) for o in stored)
    names = next((list(t.values) for t in store.trials() if t.ok), ["objective"])
    return tuple(Objective(n) for n in names)
