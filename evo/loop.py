"""The generational loop: breed, evaluate, select, record; resumable at any point.

All randomness of generation g comes from ``SeedSequence(seed, spawn_key=(g,))``, and
every generation's individuals are written to the store before they are evaluated, so
a resumed run breeds nothing twice and ends exactly where an uninterrupted one would.
A generation's trials may run in parallel on the executor and finish in any order;
selection sees them in slot order, so a seed gives the same run on every executor.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from deap import tools

from evo import _deap, breeding
from evo.config import RunConfig, Strategy, Surrogate
from evo.evaluation import Evaluator, Job, penalty
from evo.executors import Executor
from evo.executors.local import LocalExecutor
from evo.observers import Fanout, RunInfo, RunObserver
from evo.stats import generation_record, logbook
from evo.store import IndividualRecord, RunStore, TrialRecord
from evo.surrogate import Observation
from evo.trial import FailureReason, Fitness, TrialStatus

BASELINE_GENERATION = -1


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


class Evolution:
    def __init__(
        self,
        config: RunConfig,
        fitness: Fitness,
        store: RunStore,
        fingerprint: str,
        *,
        executor: Executor | None = None,
        seed_genomes: Sequence[dict[str, Any]] = (),
        observers: Sequence[RunObserver] = (),
    ):
        self.config, self.fitness, self.store = config, fitness, store
        self.settings = config.evolution
        self.objectives = tuple(fitness.objectives)
        self.multi_objective = len(self.objectives) > 1
        self.Fitness, self.Individual = _deap.make_types(self.objectives)
        self.seed_genomes = list(seed_genomes)
        self.observers = Fanout(observers)
        self.evaluator = Evaluator(
            store=store,
            executor=executor or LocalExecutor(fitness),
            objectives=self.objectives,
            fingerprint=fingerprint,
            budget=config.budget,
            master_seed=config.seed,
            config_of=config.trial_config,
            artifacts=config.artifacts,
            max_consecutive_failures=self.settings.max_consecutive_failures,
            on_trial=self.observers.trial,
        )

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> RunResult:
        self.store.interrupt_running()
        done = self.store.finished_generations()
        start = done[-1] + 1 if done else 0
        population = self._individuals(self.store.population(start - 1)) if start else []
        self.observers.start(RunInfo(self.store.run_dir, self.config, self.objectives, start))
        self._evaluate_baseline()
        for gen in range(start, self.settings.generations + 1):
            rng = np.random.default_rng(np.random.SeedSequence(self.config.seed, spawn_key=(gen,)))
            members = self.store.individuals(gen) or self.store.add_individuals(gen, self._breed(population, rng))
            self.observers.generation(gen, len(members))
            new = self._individuals(members)
            population = self._survivors(population, new)
            self._record(gen, population, new)
        self.observers.end()
        return self.result()

    def _breed(self, population: list, rng: np.random.Generator) -> list[breeding.Member]:
        if not population:
            return breeding.initial_members(self.config.space, self.settings.population_size, rng, self.seed_genomes)
        return breeding.offspring(self.config.space, population, self.settings, rng, self._observations())

    def _observations(self) -> list[Observation]:
        """Every finished trial of this run's genomes, for a surrogate (none without one)."""
        if self.settings.surrogate is Surrogate.NONE:
            return []
        names = self.config.space.names
        out = []
        for trial in self.store.trials():
            if trial.generation < 0 or trial.status is TrialStatus.RUNNING or trial.reason is FailureReason.KILLED:
                continue  # the baseline, trials in flight, and kills that say nothing about the config
            if not all(n in trial.config for n in names):
                continue
            score = tuple(o.weight * trial.values[o.name] for o in self.objectives) if trial.ok else None
            out.append(Observation({n: trial.config[n] for n in names}, score))
        return out

    def _survivors(self, population: list, new: list) -> list:
        mu = self.settings.population_size
        if not population or self.settings.strategy is Strategy.MU_PLUS_LAMBDA:
            return _deap.best(population + new, mu, self.multi_objective)
        elites = _deap.best(population, self.settings.elitism, self.multi_objective)
        return elites + _deap.best(new, mu - len(elites), self.multi_objective)

    def _record(self, gen: int, population: list, new: list) -> None:
        first = self.objectives[0].name
        trials = [self.store.trial(ind.trial_id) for ind in new]
        fresh = {t.id for ind, t in zip(new, trials) if t.generation == ind.generation}
        stats = generation_record(
            gen,
            objective=self.objectives[0],
            population_values=[self.store.trial(ind.trial_id).values.get(first) if ind.ok else None for ind in population],
            genomes=[dict(ind) for ind in population],
            space=self.config.space,
            evals=len(fresh),
            cached=len(new) - len(fresh),
            failed=sum(1 for t in trials if t.id in fresh and not t.ok),
        )
        entropy = str(np.random.SeedSequence(self.config.seed, spawn_key=(gen,)).entropy)
        self.store.finish_generation(gen, [ind.id for ind in population], stats, entropy)
        self.observers.generation_done(stats)

    # -- individuals ----------------------------------------------------------------------
    def _individuals(self, records: Sequence[IndividualRecord]) -> list:
        """DEAP individuals for stored records, evaluating those that have no trial yet
        (all at once on the executor; the results do not depend on completion order)."""
        jobs = [Job(r.id, r.genome, r.generation, r.slot) for r in records if r.trial_id is None]
        done = self.evaluator.evaluate_batch(jobs)
        return [self._individual(rec, done.get(rec.id) or self.store.trial(rec.trial_id)) for rec in records]

    def _individual(self, rec: IndividualRecord, trial: TrialRecord):
        ind = self.Individual(rec.genome)
        ind.id, ind.trial_id, ind.ok, ind.generation = rec.id, trial.id, trial.ok, rec.generation
        ind.fitness = self.Fitness(
            tuple(trial.values[o.name] for o in self.objectives) if trial.ok else penalty(self.objectives)
        )
        return ind

    def _evaluate_baseline(self) -> None:
        """The untuned reference config, evaluated once and kept out of the population."""
        if not self.config.baseline or self.store.individuals(BASELINE_GENERATION):
            return
        (rec,) = self.store.add_individuals(BASELINE_GENERATION, [(dict(self.config.baseline), "baseline", [])])
        self.evaluator.evaluate_batch([Job(rec.id, rec.genome, BASELINE_GENERATION, 0)])

    # -- results -----------------------------------------------------------------------------
    def result(self) -> RunResult:
        return build_result(self.store, self.objectives, self.settings.hall_of_fame, self.evaluator)


def build_result(store: RunStore, objectives, hof_size: int, evaluator: Evaluator | None = None) -> RunResult:
    """The best trials of a run, from the store alone (the baseline never counts)."""
    fitness_cls, individual_cls = _deap.make_types(objectives)
    multi = len(objectives) > 1
    hof = _deap.hall_of_fame(hof_size, multi)
    candidates = []
    for rec in store.individuals():
        if rec.generation == BASELINE_GENERATION or rec.trial_id is None:
            continue
        trial = store.trial(rec.trial_id)
        if not trial.ok:
            continue
        ind = individual_cls(trial.config)
        ind.trial_id = trial.id
        ind.fitness = fitness_cls(tuple(trial.values[o.name] for o in objectives))
        candidates.append(ind)
    if candidates:
        hof.update(candidates)
    best_trials = [store.trial(ind.trial_id) for ind in hof]
    trials = store.trials()
    return RunResult(
        best=[t.config for t in best_trials],
        best_trials=best_trials,
        history=logbook(store.generation_stats()),
        evaluations=evaluator.evaluations if evaluator else sum(1 for t in trials if t.generation >= -1),
        cache_hits=evaluator.cache_hits if evaluator else 0,
        run_dir=store.run_dir,
    )
