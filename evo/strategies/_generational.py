"""The generational loop: breed lambda children, evaluate them all, select mu, record.

Generation g is bred from the survivors of g - 1 with ``SeedSequence(seed, (g,))`` and
stored before it is evaluated, so a resumed run re-breeds nothing. A generation's
trials may run in parallel and finish in any order; selection sees them in slot order,
so a seed gives the same run on every executor.
"""

from __future__ import annotations

from evo.evaluation import RunResult
from evo.strategies._context import RunContext


def run(ctx: RunContext) -> RunResult:
    start = ctx.open()
    population = ctx.individuals(ctx.store.population(start - 1)) if start else []
    for gen in range(start, ctx.settings.generations + 1):
        members = ctx.store.individuals(gen) or ctx.store.add_individuals(gen, ctx.breed(population, ctx.rng(gen)))
        ctx.observers.generation(gen, len(members))
        new = ctx.evaluate(members)
        population = ctx.survivors(population, new)
        ctx.record(gen, population, new)
    return ctx.finish()
