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
from evo.multifidelity import rung_sizes, successive_halving
from evo.observers import Fanout, RunInfo, RunObserver
from evo.pruning import MedianRule
from evo.stats import generation_record, logbook
from evo.store import IndividualRecord, RunStore, TrialRecord
from evo.surrogate import MIN_OBSERVATIONS, Observation
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
        self.multi_fidelity = self.settings.multi_fidelity  # single-objective: see api.check_fitness
        # With rungs, an individual's fitness is (fidelity, value): DEAP compares fitnesses
        # lexicographically, so a trial of the whole budget beats any partial one and partial
        # ones are only ranked against each other by value when their fidelities are equal.
        self.Fitness, self.Individual = _deap.make_types(self.objectives, by_fidelity=bool(self.multi_fidelity))
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
            pruner=MedianRule(self.settings.early_stopping, self.objectives[0]) if self.settings.early_stopping else None,
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
            self.observers.generation(gen, self._planned_trials(len(members)))
            new = self._individuals(members, replay=bool(self.multi_fidelity))
            population = self._survivors(population, new)
            self._record(gen, population, new)
        self.observers.end()
        return self.result()

    def _planned_trials(self, individuals: int) -> int:
        """Trials a generation of new individuals takes: one each, or one per rung reached."""
        if not self.multi_fidelity:
            return individuals
        return sum(rung_sizes(individuals, self.multi_fidelity.rungs, self.multi_fidelity.eta))

    def _breed(self, population: list, rng: np.random.Generator) -> list[breeding.Member]:
        if not population:
            return breeding.initial_members(self.config.space, self.settings.population_size, rng, self.seed_genomes)
        return breeding.offspring(self.config.space, population, self.settings, rng, self._observations())

    def _observations(self) -> list[Observation]:
        """Every finished trial of this run's genomes, for a surrogate (none without one).

        With rungs, as BOHB: the trials of the highest fidelity that has enough of them,
        since values at different fidelities do not compare."""
        if self.settings.surrogate is Surrogate.NONE:
            return []
        names = self.config.space.names
        by_fidelity: dict[float, list[Observation]] = {}
        for trial in self.store.trials():
            if trial.generation < 0 or trial.status is TrialStatus.RUNNING or trial.reason is FailureReason.KILLED:
                continue  # the baseline, trials in flight, and kills that say nothing about the config
            if not all(n in trial.config for n in names):
                continue
            score = tuple(o.weight * trial.values[o.name] for o in self.objectives) if trial.ok else None
            by_fidelity.setdefault(trial.fidelity, []).append(Observation({n: trial.config[n] for n in names}, score))
        if not by_fidelity:
            return []
        enough = max(MIN_OBSERVATIONS, len(self.config.space) + 1)
        usable = [f for f, obs in by_fidelity.items() if len(obs) >= enough]
        return by_fidelity[max(usable or by_fidelity)]

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
        ran = [t for t in trials if t.id in fresh]
        counted = population
        if self.multi_fidelity:  # every rung is a trial of its own; statistics are of whole-budget members
            counted = [ind for ind in population if not ind.ok or ind.fitness.values[0] >= 1.0]
            ran = [t for t in self.store.trials(gen) if t.reason is not FailureReason.KILLED]
        failed = sum(1 for t in ran if t.status is TrialStatus.FAILED)
        pruned = sum(1 for t in ran if t.status is TrialStatus.PRUNED)
        stats = generation_record(
            gen,
            objective=self.objectives[0],
            population_values=[self.store.trial(ind.trial_id).values.get(first) if ind.ok else None for ind in counted],
            genomes=[dict(ind) for ind in counted],
            space=self.config.space,
            evals=len(ran),
            cached=len(new) - len(fresh),
            failed=failed,
            pruned=pruned,
        )
        entropy = str(np.random.SeedSequence(self.config.seed, spawn_key=(gen,)).entropy)
        self.store.finish_generation(gen, [ind.id for ind in population], stats, entropy)
        self.observers.generation_done(stats)

    # -- individuals ----------------------------------------------------------------------
    def _individuals(self, records: Sequence[IndividualRecord], replay: bool = False) -> list:
        """DEAP individuals for stored records, evaluating those that have no trial yet
        (all at once on the executor; the results do not depend on completion order).

        With rungs, a new generation's individuals go through successive halving, all of
        them (``replay``): on a resumed run the rungs that had finished come from the cache."""
        jobs = [Job(r.id, r.genome, r.generation, r.slot) for r in records if replay or r.trial_id is None]
        if self.multi_fidelity:
            mf = self.multi_fidelity
            done = successive_halving(self.evaluator, jobs, mf.rungs, mf.eta, self.objectives[0])
        else:
            done = self.evaluator.evaluate_batch(jobs)
        return [self._individual(rec, done.get(rec.id) or self.store.trial(rec.trial_id)) for rec in records]

    def _individual(self, rec: IndividualRecord, trial: TrialRecord):
        ind = self.Individual(rec.genome)
        ind.id, ind.trial_id, ind.ok, ind.generation = rec.id, trial.id, trial.ok, rec.generation
        values = tuple(trial.values[o.name] for o in self.objectives) if trial.ok else penalty(self.objectives)
        ind.fitness = self.Fitness((trial.fidelity if trial.ok else 0.0, *values) if self.multi_fidelity else values)
        return ind

    def _evaluate_baseline(self) -> None:
        """The untuned reference config, evaluated once and kept out of the population."""
        if not self.config.baseline or self.store.individuals(BASELINE_GENERATION):
            return
        (rec,) = self.store.add_individuals(BASELINE_GENERATION, [(dict(self.config.baseline), "baseline", [])])
        self.evaluator.evaluate_batch([Job(rec.id, rec.genome, BASELINE_GENERATION, 0)])

    # -- results -----------------------------------------------------------------------------
    def result(self) -> RunResult:
        result = build_result(self.store, self.objectives, self.settings.hall_of_fame, self.evaluator)
        if self.multi_objective:  # readable from the store without DEAP
            self.store.set_meta("pareto_front", [t.id for t in result.best_trials])
        return result


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
        if not trial.ok or not trial.full:  # a partial budget's value does not compare
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
