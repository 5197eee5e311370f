"""Asynchronous steady-state evolution: no worker waits for a generation to end.

Whenever a worker is free it gets a new child, bred from the current population with
the generational operators (tournament selection, crossover, mutation); a finished
child joins the population, which then drops its worst member (mu + 1 replacement,
NSGA-II ranking with several objectives), or with ``replacement: nearest`` the member
most like the child among those it beats (crowding, which keeps niches apart).

The store keeps the generational layout, so status, plots and reports work as they are:

- the initial population is generation 0; the k-th bred child (k = 0, 1, ...) is
  recorded as generation 1 + k // lambda, slot k % lambda, before it is evaluated, and
  the last ``immigrants`` slots of each such generation are random newcomers;
- once mu + g * lambda individuals have entered the population, pseudo-generation g
  closes: the population and its statistics are recorded with ``finish_generation``;
- every entry is written to the store with the population it leaves (the order of
  entry in the ``entries`` table, the population in meta under ``steady_state``), so a
  resumed run continues from exactly the population it had. Children
  in flight when the driver died are evaluated again; finished ones never are.

Determinism: each child's randomness comes from ``SeedSequence(seed, (g, slot))``, but
the population it is bred from depends on which trials finished first. With one
worker a seed always gives the same run; with several, runs of one seed may differ.
"""

from __future__ import annotations

import dataclasses
from collections import deque

from evo.config import Replacement
from evo.evaluation import RunResult
from evo.search import Candidate, offspring, select_best
from evo.storage import BASELINE_GENERATION, IndividualRecord, TrialRecord
from evo.strategies._context import RunContext, job_of

STATE_KEY = "steady_state"


def run(ctx: RunContext) -> RunResult:
    settings = ctx.settings
    closed = ctx.open()
    state = _Population.load(ctx, closed)
    if not state.members:
        initial = ctx.initial_candidates(ctx.rng(0))
        state.members = {r.id: r for r in ctx.store.add_individuals(0, initial)}
    ctx.observers.generation(closed, settings.population_size if closed == 0 else settings.lambda_)
    state.close_due()
    entered = set(state.entered)
    for rec in list(state.members.values()):  # finished just before the driver stopped
        if rec.trial_id is not None and rec.id not in entered:
            state.enter(rec, ctx.store.trial(rec.trial_id))
    queue = deque(r for r in state.members.values() if r.trial_id is None)
    bred = sum(1 for r in state.members.values() if r.generation >= 1)
    total = settings.generations * settings.lambda_
    while True:
        while (
            ctx.evaluator.has_room()
            and (queue or (bred < total and state.population))
            and ctx.evaluator.may_start(job_of(queue[0]) if queue else None)
        ):
            if queue:
                rec = queue.popleft()
            else:
                rec, bred = state.breed_child(bred), bred + 1
            outcome = ctx.evaluator.submit(job_of(rec))
            if outcome is not None:
                state.enter(rec, outcome.record)
        if not ctx.evaluator.busy:
            break
        for outcome in ctx.evaluator.next_finished():
            state.enter(state.members[outcome.individual_id], outcome.record)
    return ctx.finish()


@dataclasses.dataclass
class _Population:
    """The living population, every member bred so far, and the order they entered in."""

    ctx: RunContext
    members: dict[int, IndividualRecord]
    population: list
    entered: list[int]
    closed: int  # pseudo-generations recorded

    @classmethod
    def load(cls, ctx: RunContext, closed: int) -> _Population:
        members = {r.id: r for r in ctx.store.individuals() if r.generation > BASELINE_GENERATION}
        saved = ctx.store.meta(STATE_KEY, {"population": []})
        population = ctx.individuals([members[i] for i in saved["population"]])
        return cls(ctx, members, population, ctx.store.entries(), closed)

    def breed_child(self, k: int) -> IndividualRecord:
        """The k-th bred child, recorded before it is evaluated."""
        ctx, lam = self.ctx, self.ctx.settings.lambda_
        gen, slot = 1 + k // lam, k % lam
        rng = ctx.rng(gen, slot)
        if slot >= lam - ctx.settings.immigrants:
            member: Candidate = (ctx.space.sample(rng), "immigrant", [])
        else:
            one = dataclasses.replace(ctx.settings, offspring_size=1, immigrants=0)
            history = ctx.history()
            (member,) = offspring(ctx.space, self.population, one, rng, history.window(), history.known)
        (rec,) = [r for r in ctx.store.add_individuals(gen, [member], first_slot=slot) if r.slot == slot]
        self.members[rec.id] = rec
        return rec

    def enter(self, rec: IndividualRecord, trial: TrialRecord) -> None:
        """A finished child joins the population, which drops a member (see :func:`_survivors`)."""
        ctx = self.ctx
        self.members[rec.id] = dataclasses.replace(rec, trial_id=trial.id)
        self.population = _survivors(ctx, self.population, ctx.individual(rec, trial))
        self.entered.append(rec.id)
        ctx.store.enter(rec.id, STATE_KEY, [i.id for i in self.population])
        self.close_due()

    def close_due(self) -> None:
        """Record pseudo-generation g once mu + g * lambda individuals have entered."""
        ctx = self.ctx
        mu, lam, last = ctx.settings.population_size, ctx.settings.lambda_, ctx.settings.generations
        while len(self.entered) >= mu + self.closed * lam and self.closed <= last:
            gen = self.closed
            window = self.entered[:mu] if gen == 0 else self.entered[mu + (gen - 1) * lam : mu + gen * lam]
            new = ctx.individuals([self.members[i] for i in window])
            ctx.record(gen, self.population, new)
            self.closed += 1
            if self.closed <= last:
                ctx.observers.generation(self.closed, lam)


def _survivors(ctx: RunContext, population: list, child) -> list:
    """The population once ``child`` has entered: it displaces the worst member, or with
    ``replacement: nearest`` the member closest to it among those it beats (none: it is dropped)."""
    mu = ctx.settings.population_size
    if len(population) < mu or ctx.multi_objective or ctx.settings.replacement is Replacement.WORST:
        return select_best(population + [child], mu, ctx.multi_objective)
    beaten = [m for m in population if child.ok and (not m.ok or child.fitness > m.fitness)]
    if not beaten:
        return population
    gone = min(beaten, key=lambda m: (ctx.space.distance(m, child), m.id))
    return [m for m in population if m is not gone] + [child]
