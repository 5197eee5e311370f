"""Generations whose new individuals go through successive halving (as DEHB spends compute).

Every new individual trains to the first rung (a small fraction of the budget); the
best ``ceil(n / eta)`` of each rung continue from their checkpoint to the next one,
eta times further, up to the whole budget. Each rung's trial is its own row in the
store (``fidelity``, ``resumed_from``), and its ``train_tokens`` are only the tokens it
added, so compute is never counted twice. Ranking within a rung compares trials at
the same fidelity only; ties keep slot order, so a seed gives the same run.

A rung's trials are cached under ``<fingerprint>@<fidelity>``: a resumed generation
replays the halving and finds the rungs that had finished. Survivors are ranked by
(fidelity, value), so whole-budget members come first; statistics and the best
config count whole-budget members only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from evo.early_stopping import rung_sizes
from evo.evaluation import Evaluator, Job, RunResult
from evo.storage import TrialRecord
from evo.strategies._context import RunContext, job_of
from evo.trial import FailureReason, Objective


def run(ctx: RunContext) -> RunResult:
    mf = ctx.settings.multi_fidelity
    assert mf is not None  # the config sets it in this mode
    rungs, eta = mf.rungs, mf.eta
    start = ctx.open()
    population = ctx.individuals(ctx.store.population(start - 1)) if start else []
    for gen in range(start, ctx.settings.generations + 1):
        members = ctx.store.individuals(gen) or ctx.store.add_individuals(gen, ctx.breed(population, ctx.rng(gen)))
        ctx.observers.generation(gen, sum(rung_sizes(len(members), rungs, eta)))
        reached = train_through_rungs(ctx.evaluator, [job_of(r) for r in members], rungs, eta, ctx.objectives[0])
        new = ctx.individuals(members, reached)
        population = ctx.survivors(population, new)
        whole_budget = [ind for ind in population if not ind.ok or ind.fitness.values[0] >= 1.0]
        ran = [t for t in ctx.store.trials(gen) if t.reason is not FailureReason.KILLED]
        ctx.record(gen, population, new, counted=whole_budget, ran=ran)
    return ctx.finish()


def train_through_rungs(
    evaluator: Evaluator, jobs: Sequence[Job], rungs: Sequence[float], eta: int, objective: Objective
) -> dict[int, TrialRecord]:
    """The last trial of every job's individual: at the highest rung it reached."""
    results: dict[int, TrialRecord] = {}
    candidates, continued = list(jobs), dict[int, int]()
    for rung, fidelity in enumerate(rungs):
        last = rung == len(rungs) - 1
        rung_jobs = [
            dataclasses.replace(
                job, fidelity=fidelity, checkpoint=not last, resume_from=continued.get(job.individual_id)
            )
            for job in candidates
        ]
        done = evaluator.evaluate_batch(rung_jobs)
        results.update(done)
        if last:
            break
        finished = [job for job in candidates if done[job.individual_id].ok]
        finished.sort(key=lambda job: -objective.weight * done[job.individual_id].values[objective.name])
        candidates = finished[: math.ceil(len(candidates) / eta)]
        continued = {job.individual_id: done[job.individual_id].id for job in candidates}
        if not candidates:
            break
    evaluator.files.keep_checkpoints()  # the generation's halving is over: no rung continues
    return results
