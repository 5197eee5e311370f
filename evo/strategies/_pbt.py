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
from typing import Any

import numpy as np

from evo.evaluation import RunResult
from evo.search import Candidate, select_best
from evo.space import SearchSpace, mutate
from evo.storage import BASELINE_GENERATION
from evo.strategies._context import RunContext, job_of

SCHEDULE_KEY = "pbt_schedule"


def run(ctx: RunContext) -> RunResult:
    ends = ctx.settings.pbt.ends
    start = ctx.open()
    population = ctx.individuals(ctx.store.population(start - 1)) if start else []
    for gen in range(start, len(ends)):
        members = ctx.store.individuals(gen) or ctx.store.add_individuals(gen, _next(ctx, population, ctx.rng(gen)))
        ctx.observers.generation(gen, len(members))
        parents = {ind.id: ind.trial_id for ind in population}
        jobs = [
            job_of(
                r,
                fidelity=ends[gen],
                checkpoint=gen < len(ends) - 1,
                cacheable=False,
                resume_from=parents.get(r.parents[0]) if r.parents else None,
            )
            for r in members
            if r.trial_id is None
        ]
        population = ctx.individuals(members, ctx.evaluator.evaluate_batch(jobs))
        ctx.record(gen, population, population)
        ctx.evaluator.files.keep_checkpoints(ind.trial_id for ind in population)  # the next interval continues these
    result = ctx.result()
    ctx.store.set_meta(SCHEDULE_KEY, _schedule(ctx, result))
    ctx.observers.end()
    return result


def _next(ctx: RunContext, population: list, rng: np.random.Generator) -> list[Candidate]:
    """The members of the next interval: most continue, the bottom exploit and explore."""
    if not population:
        return ctx.initial_candidates(rng)
    ranked = select_best(population, len(population), ctx.multi_objective)
    cut = max(1, math.floor(ctx.settings.pbt.quantile * len(ranked)))
    top = [ind for ind in ranked[:cut] if ind.ok]
    bottom = {ind.id for ind in ranked[len(ranked) - cut :]} | {ind.id for ind in population if not ind.ok}
    members: list[Candidate] = []
    for ind in population:  # slot order
        if ind.id in bottom and top:
            source = top[int(rng.integers(len(top)))]
            members.append((_explore(ctx, dict(source), rng), "exploit", [source.id]))
        else:
            members.append((dict(ind), "continue", [ind.id]))
    return members


def _explore(ctx: RunContext, genome: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Mutate the genes that may change while the weights are kept."""
    structural = ctx.fitness.structural_genes
    movable = [g for g in ctx.space if g.name not in structural]
    if not movable:
        return genome
    settings = ctx.settings
    return mutate(
        SearchSpace(movable), genome, rng, gene_rate=settings.gene_mutation_rate, sigma=settings.mutation_sigma
    )


def _schedule(ctx: RunContext, result: RunResult) -> list[dict[str, Any]]:
    """The final best member's configs per interval, first interval first."""
    if not result.best_trials:
        return []
    best_trial = result.best_trials[0].id
    by_id = {r.id: r for r in ctx.store.individuals() if r.generation > BASELINE_GENERATION}
    member = next((r for r in by_id.values() if r.trial_id == best_trial), None)
    ends, schedule = ctx.settings.pbt.ends, []
    while member is not None:
        schedule.append(
            {
                "generation": member.generation,
                "individual": member.id,
                "trial": member.trial_id,
                "from_fraction": ends[member.generation - 1] if member.generation else 0.0,
                "to_fraction": ends[member.generation],
                "config": ctx.config.trial_config(member.genome),
            }
        )
        member = by_id.get(member.parents[0]) if member.parents else None
    return schedule[::-1]
