"""Population-based training (Jaderberg et al. 2017) for LoRA adapters.

The population trains side by side, one interval of the budget at a time; every
member continues its own checkpoint. After each interval, the bottom ``quantile``
(and every member that failed or was stopped) exploits: it takes the adapter weights
and optimizer state of a random top-quantile member, then explores: its hyperparameters
are mutated, except the structural genes the fitness names (rank, alpha, target
modules, ...), which it inherits with the weights. The 4-bit base stays shared; an
adapter checkpoint is a few MB, so exploiting is cheap.

In the store, interval g is generation g: each member is an individual whose parent
is the member it continued or copied, and whose trial trains from ``ends[g-1]`` to
``ends[g]`` of the budget. The hyperparameter schedule of the final best member (its
lineage's configs per interval) is kept in the run's meta as ``pbt_schedule``.
"""
from __future__ import annotations

import math

import numpy as np

from evo import _deap, breeding
from evo.evaluation import Job
from evo.loop import Evolution, RunResult
from evo.observers import RunInfo
from evo.operators import mutate
from evo.space import SearchSpace

SCHEDULE_KEY = "pbt_schedule"


class PopulationBasedTraining(Evolution):
    def run(self) -> RunResult:
        self.store.interrupt_running()
        ends = self.settings.pbt.ends
        done = self.store.finished_generations()
        start = done[-1] + 1 if done else 0
        self.observers.start(RunInfo(self.store.run_dir, self.config, self.objectives, start))
        self._evaluate_baseline()
        population = self._individuals(self.store.population(start - 1)) if start else []
        for gen in range(start, len(ends)):
            rng = np.random.default_rng(np.random.SeedSequence(self.config.seed, spawn_key=(gen,)))
            members = self.store.individuals(gen) or self.store.add_individuals(gen, self._next(population, rng))
            self.observers.generation(gen, len(members))
            parents = {ind.id: ind.trial_id for ind in population}
            jobs = [
                Job(r.id, r.genome, gen, r.slot, fidelity=ends[gen], checkpoint=gen < len(ends) - 1,
                    resume_from=parents.get(r.parents[0]) if r.parents else None, cacheable=False)
                for r in members if r.trial_id is None
            ]
            done_now = self.evaluator.evaluate_batch(jobs)
            new = [self._individual(r, done_now.get(r.id) or self.store.trial(r.trial_id)) for r in members]
            self._record(gen, new, new)
            self.evaluator.keep_checkpoints(ind.trial_id for ind in new)  # the next interval continues these
            population = new
        self.store.set_meta(SCHEDULE_KEY, self._schedule())
        self.observers.end()
        return self.result()

    def _next(self, population: list, rng: np.random.Generator) -> list[breeding.Member]:
        """The members of the next interval: most continue, the bottom exploit and explore."""
        if not population:
            return breeding.initial_members(self.config.space, self.settings.population_size, rng, self.seed_genomes)
        ranked = _deap.best(population, len(population), self.multi_objective)
        cut = max(1, math.floor(self.settings.pbt.quantile * len(ranked)))
        top = [ind for ind in ranked[:cut] if ind.ok]
        bottom = {ind.id for ind in ranked[len(ranked) - cut:]} | {ind.id for ind in population if not ind.ok}
        members = []
        for ind in population:  # slot order
            if ind.id in bottom and top:
                source = top[int(rng.integers(len(top)))]
                members.append((self._explore(dict(source), rng), "exploit", [source.id]))
            else:
                members.append((dict(ind), "continue", [ind.id]))
        return members

    def _explore(self, genome: dict, rng: np.random.Generator) -> dict:
        """Mutate the genes that may change while the weights are kept."""
        structural = getattr(self.fitness, "structural_genes", frozenset())
        movable = SearchSpace([g for g in self.config.space if g.name not in structural])
        if not len(movable):
            return genome
        return mutate(movable, genome, rng, gene_rate=self.settings.gene_mutation_rate, sigma=self.settings.mutation_sigma)

    def _schedule(self) -> list[dict]:
        """The final best member's configs per interval, first interval first."""
        result = self.result()
        if not result.best_trials:
            return []
        best_trial = result.best_trials[0].id
        by_id = {r.id: r for r in self.store.individuals() if r.generation >= 0}
        member = next((r for r in by_id.values() if r.trial_id == best_trial), None)
        ends, schedule = self.settings.pbt.ends, []
        while member is not None:
            schedule.append({
                "generation": member.generation, "individual": member.id, "trial": member.trial_id,
                "from_fraction": ends[member.generation - 1] if member.generation else 0.0,
                "to_fraction": ends[member.generation], "config": self.config.trial_config(member.genome),
            })
            member = by_id.get(member.parents[0]) if member.parents else None
        return schedule[::-1]
