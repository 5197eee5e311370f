"""Successive halving of one generation's new individuals (the DEHB way of spending compute).

Every new individual trains to the first rung (a small fraction of the budget); the
best ``ceil(n / eta)`` of each rung continue from their checkpoint to the next one,
eta times further, up to the whole budget. Each rung's trial is its own row in the
store (``fidelity``, ``resumed_from``), and its ``train_tokens`` are only the tokens it
added, so compute is never counted twice. Ranking within a rung compares trials at
the same fidelity only; ties keep slot order, so a seed gives the same run.

A rung's trials are cached under ``<fingerprint>@<fidelity>``: a resumed generation
replays the halving and finds the rungs that had finished.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from evo.evaluation import Evaluator, Job
from evo.store import TrialRecord
from evo.trial import Objective


def rung_sizes(n: int, rungs: Sequence[float], eta: int) -> list[int]:
    """How many of ``n`` new individuals train at each rung (at most; failures promote fewer)."""
    sizes = [n]
    for _ in rungs[1:]:
        sizes.append(math.ceil(sizes[-1] / eta))
    return sizes


def successive_halving(
    evaluator: Evaluator, jobs: Sequence[Job], rungs: Sequence[float], eta: int, objective: Objective
) -> dict[int, TrialRecord]:
    """The last trial of every job's individual: at the highest rung it reached."""
    results: dict[int, TrialRecord] = {}
    candidates, continued = list(jobs), {}
    for rung, fidelity in enumerate(rungs):
        last = rung == len(rungs) - 1
        rung_jobs = [
            dataclasses.replace(job, fidelity=fidelity, checkpoint=not last, resume_from=continued.get(job.individual_id))
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
    evaluator.keep_checkpoints()  # the generation's halving is over: no rung continues
    return results
