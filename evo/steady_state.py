"""Asynchronous steady-state evolution: no worker waits for a generation to end.

Whenever a worker is free it gets a new child, bred from the current population with
the generational loop's operators (tournament selection, crossover, mutation); a
finished child joins the population, which then drops its worst member (mu + 1
replacement, NSGA-II ranking with several objectives).

The store keeps the generational layout, so status, plots and reports work as they are:

- the initial population is generation 0; the k-th bred child (k = 0, 1, ...) is
  recorded as generation 1 + k // lambda, slot k % lambda, before it is evaluated, and
  the last ``immigrants`` slots of each such generation are random newcomers;
- once mu + g * lambda individuals have entered the population, pseudo-generation g
  closes: the population and its statistics are recorded with ``finish_generation``;
- the population and the order of entry are also written to the store's meta with
  every entry, so a resumed run continues from exactly the population it had. Children
  in flight when the driver died are evaluated again; finished ones never are.

Determinism: each child's randomness comes from ``SeedSequence(seed, spawn_key=(g, slot))``,
but the population it is bred from depends on which trials finished first. With one
worker a seed always gives the same run; with several, runs of one seed may differ.
"""
from __future__ import annotations

import dataclasses
from collections import deque

import numpy as np

from evo import _deap, breeding
from evo.evaluation import Job
from evo.loop import Evolution, RunResult
from evo.observers import RunInfo
from evo.store import IndividualRecord, TrialRecord

STATE_KEY = "steady_state"


class SteadyStateEvolution(Evolution):
    def run(self) -> RunResult:
        self.store.interrupt_running()
        mu, total = self.settings.population_size, self.settings.generations * self.settings.lambda_
        self.members = {r.id: r for r in self.store.individuals() if r.generation >= 0}
        state = self.store.meta(STATE_KEY, {"population": [], "entered": []})
        self.entered = list(state["entered"])
        self.population = [self._individual(self.members[i], self.store.trial(self.members[i].trial_id))
                           for i in state["population"]]
        self.closed = len(self.store.finished_generations())
        self.observers.start(RunInfo(self.store.run_dir, self.config, self.objectives, self.closed))
        self._evaluate_baseline()
        if not self.members:
            rng = np.random.default_rng(np.random.SeedSequence(self.config.seed, spawn_key=(0,)))
            initial = breeding.initial_members(self.config.space, mu, rng, self.seed_genomes)
            self.members = {r.id: r for r in self.store.add_individuals(0, initial)}
        self.observers.generation(self.closed, mu if self.closed == 0 else self.settings.lambda_)
        self._close_due()
        entered = set(self.entered)
        for rec in list(self.members.values()):  # finished just before the driver stopped
            if rec.trial_id is not None and rec.id not in entered:
                self._enter(rec, self.store.trial(rec.trial_id))
        queue = deque(r for r in self.members.values() if r.trial_id is None)
        bred = sum(1 for r in self.members.values() if r.generation >= 1)
        while True:
            while self.evaluator.has_room() and (queue or (bred < total and self.population)):
                if queue:
                    rec = queue.popleft()
                else:
                    rec, bred = self._breed_child(bred), bred + 1
                outcome = self.evaluator.submit(Job(rec.id, rec.genome, rec.generation, rec.slot))
                if outcome is not None:
                    self._enter(rec, outcome.record)
            if not self.evaluator.busy:
                break
            for outcome in self.evaluator.next_finished():
                self._enter(self.members[outcome.individual_id], outcome.record)
        self.observers.end()
        return self.result()

    def _breed_child(self, k: int) -> IndividualRecord:
        """The k-th bred child, recorded before it is evaluated."""
        lam = self.settings.lambda_
        gen, slot = 1 + k // lam, k % lam
        rng = np.random.default_rng(np.random.SeedSequence(self.config.seed, spawn_key=(gen, slot)))
        if slot >= lam - self.settings.immigrants:
            member = (self.config.space.sample(rng), "immigrant", [])
        else:
            one = dataclasses.replace(self.settings, offspring_size=1, immigrants=0)
            (member,) = breeding.offspring(self.config.space, self.population, one, rng, self._observations())
        (rec,) = [r for r in self.store.add_individuals(gen, [member], first_slot=slot) if r.slot == slot]
        self.members[rec.id] = rec
        return rec

    def _enter(self, rec: IndividualRecord, trial: TrialRecord) -> None:
        """A finished child joins the population, which drops its worst member."""
        self.members[rec.id] = dataclasses.replace(rec, trial_id=trial.id)
        candidates = self.population + [self._individual(rec, trial)]
        self.population = _deap.best(candidates, self.settings.population_size, self.multi_objective)
        self.entered.append(rec.id)
        self.store.set_meta(STATE_KEY, {"population": [i.id for i in self.population], "entered": self.entered})
        self._close_due()

    def _close_due(self) -> None:
        """Record pseudo-generation g once mu + g * lambda individuals have entered."""
        mu, lam = self.settings.population_size, self.settings.lambda_
        while len(self.entered) >= mu + self.closed * lam and self.closed <= self.settings.generations:
            gen = self.closed
            window = self.entered[:mu] if gen == 0 else self.entered[mu + (gen - 1) * lam: mu + gen * lam]
            new = [self._individual(self.members[i], self.store.trial(self.members[i].trial_id)) for i in window]
            self._record(gen, self.population, new)
            self.closed += 1
            if self.closed <= self.settings.generations:
                self.observers.generation(self.closed, lam)
