"""What every strategy shares: the run context and the small steps they are built from.

A strategy is one function ``run(ctx) -> RunResult`` that reads top to bottom; the
context holds the run's store, evaluator, observers and DEAP types, and does the
steps all strategies take the same way: the opening (a dead driver's trials marked
killed, observers told, the baseline evaluated), individuals from stored records,
breeding and selection, recording a finished generation, and the result.

All randomness of generation g comes from ``SeedSequence(seed, spawn_key=(g, ...))``
and every individual is written to the store before it is evaluated, so a resumed run
breeds nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evo.config import EarlyStopping, Mode, RunConfig, StopRule, Surrogate, Survival
from evo.early_stopping import HalvingRule, MedianRule
from evo.evaluation import (
    DRIVER_SECONDS,
    Evaluator,
    Fanout,
    Job,
    RunInfo,
    RunObserver,
    RunResult,
    Spending,
    build_result,
    penalty,
)
from evo.executors import Executor
from evo.search import (
    MIN_OBSERVATIONS,
    Candidate,
    History,
    Observation,
    Prior,
    deap_types,
    generation_record,
    initial_candidates,
    offspring,
    select_best,
)
from evo.storage import BASELINE_GENERATION, IndividualRecord, RunStore, TrialRecord
from evo.trial import FailureReason, Fitness, Objective, TrialStatus


@dataclass
class RunContext:
    config: RunConfig
    fitness: Fitness
    store: RunStore
    evaluator: Evaluator
    observers: Fanout
    warm_start: list[dict[str, Any]]
    by_fidelity: bool  # an individual's fitness is (fidelity, values...): whole-budget trials rank first

    @classmethod
    def build(
        cls,
        config: RunConfig,
        fitness: Fitness,
        store: RunStore,
        fingerprint: str,
        *,
        executor: Executor,
        warm_start: Sequence[Mapping[str, Any]] = (),
        observers: Sequence[RunObserver] = (),
    ) -> RunContext:
        settings = config.evolution
        objectives = tuple(fitness.objectives)
        fanout = Fanout(observers)
        stopping = settings.stopping(fitness.intermediate_values)
        pruner = None
        if stopping is not None:
            pruner = stopping_rule(stopping, objectives[0])
        evaluator = Evaluator(
            store=store,
            executor=executor,
            objectives=objectives,
            fingerprint=fingerprint,
            budget=config.budget,
            master_seed=config.seed,
            config_of=config.trial_config,
            artifacts=config.artifacts,
            max_consecutive_failures=settings.max_consecutive_failures,
            on_trial=fanout.trial,
            pruner=pruner,
            spending=Spending.open(store, config.run_budget, config.budget),
        )
        by_fidelity = settings.mode is Mode.MULTI_FIDELITY
        return cls(config, fitness, store, evaluator, fanout, [dict(g) for g in warm_start], by_fidelity)

    def __post_init__(self) -> None:
        self.settings = self.config.evolution
        self.space = self.config.space
        self.objectives = tuple(self.fitness.objectives)
        self.multi_objective = len(self.objectives) > 1
        # DEAP compares fitnesses lexicographically: with fidelity first, a whole-budget
        # trial beats any partial one, and partial ones only compare at equal fidelity.
        self.FitnessValues, self.Individual = deap_types(self.objectives, by_fidelity=self.by_fidelity)
        self._observed: dict[float, History] = {}  # finished trials by fidelity, for a surrogate
        self._read_up_to = 0  # trial ids up to here have been read into _observed
        self._running: set[int] = set()  # ids read while in flight

    # -- the opening and the end ----------------------------------------------------------
    def open(self) -> int:
        """Start or resume: returns the first generation not yet recorded."""
        self.store.interrupt_running()
        done = self.store.finished_generations()
        start = done[-1] + 1 if done else 0
        self.observers.start(
            RunInfo(self.store.run_dir, self.config, self.objectives, start, spending=self.evaluator.spending)
        )
        self._evaluate_baseline()
        return start

    def _evaluate_baseline(self) -> None:
        """The untuned reference config, evaluated once and kept out of the population."""
        if not self.config.baseline:
            return
        records = self.store.individuals(BASELINE_GENERATION) or self.store.add_individuals(
            BASELINE_GENERATION, [(dict(self.config.baseline), "baseline", [])]
        )
        # evaluated anew when the driver died during its trial
        self.evaluator.evaluate_batch([job_of(r) for r in records if r.trial_id is None])

    def result(self) -> RunResult:
        result = build_result(self.store, self.objectives, self.settings.hall_of_fame, self.evaluator)
        if self.multi_objective:  # readable from the store without DEAP
            self.store.set_meta("pareto_front", [t.id for t in result.best_trials])
        return result

    def finish(self) -> RunResult:
        assert self.evaluator.spending is not None
        self.store.set_meta(DRIVER_SECONDS, self.evaluator.spending.driver_seconds())
        self.observers.end()
        return self.result()

    def rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.config.seed, spawn_key=key))

    # -- individuals ------------------------------------------------------------------------
    def individual(self, rec: IndividualRecord, trial: TrialRecord) -> Any:
        """A DEAP individual for a stored individual and the trial that scored it."""
        ind = self.Individual(rec.genome)
        ind.id, ind.trial_id, ind.ok, ind.generation = rec.id, trial.id, trial.ok, rec.generation
        values = tuple(trial.values[o.name] for o in self.objectives) if trial.ok else penalty(self.objectives)
        ind.fitness = self.FitnessValues((trial.fidelity if trial.ok else 0.0, *values) if self.by_fidelity else values)
        return ind

    def individuals(self, records: Sequence[IndividualRecord], trials: Mapping[int, TrialRecord] = {}) -> list:
        """Individuals for evaluated records; ``trials`` (by individual id) wins over the stored link."""
        out = []
        for rec in records:
            trial = trials.get(rec.id)
            if trial is None:
                assert rec.trial_id is not None, f"individual {rec.id} has no trial yet"
                trial = self.store.trial(rec.trial_id)
            out.append(self.individual(rec, trial))
        return out

    def evaluate(self, records: Sequence[IndividualRecord]) -> list:
        """Individuals for records, evaluating those that have no trial yet (all at once on
        the executor; the results do not depend on completion order)."""
        jobs = [job_of(r) for r in records if r.trial_id is None]
        return self.individuals(records, self.evaluator.evaluate_batch(jobs))

    # -- breeding and selection ------------------------------------------------------------
    def breed(self, population: list, rng: np.random.Generator) -> list[Candidate]:
        """The initial population (warm-start genomes first), or a generation's offspring."""
        if not population:
            return self.initial_candidates(rng)
        history = self.history()
        return offspring(self.space, population, self.settings, rng, history.window(), history.known)

    def initial_candidates(self, rng: np.random.Generator) -> list[Candidate]:
        """Warm-start genomes, then draws around the baseline (``prior_share``), then draws as ``init`` says."""
        prior = None
        if self.settings.prior_share > 0 and self.config.baseline:
            centre, _ = self.space.adapt({k: v for k, v in self.config.baseline.items() if k in self.space.genes}, rng)
            prior = Prior(centre, self.settings.prior_share)
        return initial_candidates(
            self.space, self.settings.population_size, rng, self.warm_start, self.settings.init, prior
        )

    def survivors(self, population: list, new: list) -> list:
        """mu + lambda: the best of both; mu, lambda: the elites and the best offspring."""
        mu = self.settings.population_size
        if not population or self.settings.strategy is Survival.MU_PLUS_LAMBDA:
            return select_best(population + new, mu, self.multi_objective)
        elites = select_best(population, self.settings.elitism, self.multi_objective)
        return elites + select_best(new, mu - len(elites), self.multi_objective)

    def history(self) -> History:
        """The finished trials of this run's genomes a surrogate learns from (empty without
        one), read incrementally: each call reads only the trials stored since.

        With rungs, as BOHB: the trials of the highest fidelity that has enough of them,
        since values at different fidelities do not compare."""
        if self.settings.surrogate is Surrogate.NONE:
            return History()
        self._read_new_outcomes()
        if not self._observed:
            return History()
        enough = max(MIN_OBSERVATIONS, len(self.space) + 1)
        usable = [f for f, history in self._observed.items() if len(history) >= enough]
        return self._observed[max(usable or self._observed)]

    def _read_new_outcomes(self) -> None:
        names = self.space.names
        new = self.store.outcomes(after=self._read_up_to, also=sorted(self._running))
        self._running = set()
        for trial in new:
            self._read_up_to = max(self._read_up_to, trial.id)
            if trial.status is TrialStatus.RUNNING:
                self._running.add(trial.id)  # read again once it finished
                continue
            if trial.generation < 0 or trial.reason is FailureReason.KILLED:
                continue  # the baseline and imported trials, and kills that say nothing about the config
            if not all(n in trial.config for n in names):
                continue
            score = tuple(o.weight * trial.values[o.name] for o in self.objectives) if trial.ok else None
            genome = {n: trial.config[n] for n in names}
            self._observed.setdefault(trial.fidelity, History()).add(Observation(genome, score, trial.generation))

    # -- recording ------------------------------------------------------------------------------
    def record(
        self,
        gen: int,
        population: list,
        new: list,
        *,
        counted: list | None = None,
        ran: list[TrialRecord] | None = None,
    ) -> None:
        """Record generation ``gen`` as finished: its survivors and their statistics.

        ``counted`` are the members the statistics describe (default: the population);
        ``ran`` the trials the generation trained (default: those of ``new`` that were
        not reused from the cache)."""
        trials = [self.store.trial(ind.trial_id) for ind in new]
        fresh = {t.id for ind, t in zip(new, trials) if t.generation == ind.generation}
        ran = [t for t in trials if t.id in fresh] if ran is None else ran
        counted = population if counted is None else counted
        first = self.objectives[0].name
        stats = generation_record(
            gen,
            objective=self.objectives[0],
            population_values=[self.store.trial(ind.trial_id).values.get(first) if ind.ok else None for ind in counted],
            genomes=[dict(ind) for ind in counted],
            space=self.space,
            evals=len(ran),
            cached=len(new) - len(fresh),
            failed=sum(1 for t in ran if t.status is TrialStatus.FAILED),
            pruned=sum(1 for t in ran if t.status is TrialStatus.PRUNED),
        )
        entropy = str(np.random.SeedSequence(self.config.seed, spawn_key=(gen,)).entropy)
        self.store.finish_generation(gen, [ind.id for ind in population], stats, entropy)
        self.observers.generation_done(stats)


def job_of(rec: IndividualRecord, **options: Any) -> Job:
    """The evaluation of a stored individual; its generation and slot fix the trial seed."""
    return Job(rec.id, rec.genome, rec.generation, rec.slot, **options)


def stopping_rule(settings: EarlyStopping, objective: Objective) -> HalvingRule | MedianRule:
    """The early-stopping rule ``evolution.early_stopping`` asks for, judging ``objective``."""
    if settings.rule is StopRule.HALVING:
        return HalvingRule(objective, settings.rungs, settings.eta, settings.brackets, settings.loss_ratio)
    return MedianRule(objective, settings.min_trials, settings.warmup, settings.loss_ratio)
