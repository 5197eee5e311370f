"""Per-generation statistics: the rows of the run's DEAP Logbook."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from deap import tools

from evo.space import SearchSpace
from evo.trial import Direction, Objective

LOG_FIELDS = ("gen", "evals", "cached", "failed", "pruned", "best", "median", "mean", "worst", "std", "diversity")


def diversity(space: SearchSpace, genomes: Sequence[Mapping[str, Any]]) -> float:
    """Genotypic diversity: mean pairwise gene distance in [0, 1] (0 = all identical)."""
    pairs = list(itertools.combinations(genomes, 2))
    if not pairs:
        return 0.0
    return float(np.mean([space.distance(a, b) for a, b in pairs]))


def generation_record(
    gen: int,
    *,
    objective: Objective,
    population_values: Sequence[float | None],
    genomes: Sequence[Mapping[str, Any]],
    space: SearchSpace,
    evals: int,
    cached: int,
    failed: int,
    pruned: int = 0,
) -> dict[str, Any]:
    """Statistics of the surviving population on the first objective.

    Failed individuals have no value and are left out of best/median/mean/worst/std;
    ``failed`` counts the failures among this generation's new trials, ``pruned`` those
    stopped early.
    """
    values = np.array([v for v in population_values if v is not None], dtype=float)
    record: dict[str, Any] = {"gen": gen, "evals": evals, "cached": cached, "failed": failed, "pruned": pruned}
    if values.size:
        lo, hi = float(values.min()), float(values.max())
        minimize = objective.direction is Direction.MINIMIZE
        record.update(
            best=lo if minimize else hi,
            median=float(np.median(values)),
            mean=float(values.mean()),
            worst=hi if minimize else lo,
            std=float(values.std()),
        )
    else:
        record.update(best=None, median=None, mean=None, worst=None, std=None)
    record["diversity"] = diversity(space, genomes)
    return record


def logbook(records: Sequence[Mapping[str, Any]]) -> tools.Logbook:
    book = tools.Logbook()
    book.header = list(LOG_FIELDS)
    for record in records:
        book.record(**{k: record.get(k) for k in LOG_FIELDS})
    return book
