"""DEAP glue, kept in one place so its global state cannot leak.

``creator.create`` writes classes into ``deap.creator``'s module globals, once per
process, which breaks runs with different objectives in one process and pickling
across processes. Here the classes are built by a factory and never registered.
DEAP's stochastic operators draw from Python's global ``random``; they run inside
:func:`seeded_random`, which seeds it from the run's numpy generator and restores it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from deap import base, tools

from evo.trial import Objective


def deap_types(objectives: Sequence[Objective], by_fidelity: bool = False) -> tuple[type, type]:
    """Fitness and Individual classes for these objectives. An individual is a plain
    dict of genes with ``fitness``, ``id``, ``trial_id`` and ``ok`` attributes.

    ``by_fidelity`` puts a maximised fidelity in front of the objective (single-objective
    only): DEAP compares fitnesses lexicographically, so fidelity decides first."""
    weights = tuple(o.weight for o in objectives)
    fitness_cls = type("Fitness", (base.Fitness,), {"weights": (1.0, *weights) if by_fidelity else weights})
    individual_cls = type("Individual", (dict,), {"fitness": None, "id": None, "trial_id": None, "ok": False})
    return fitness_cls, individual_cls


@contextmanager
def seeded_random(rng: np.random.Generator) -> Iterator[None]:
    state = random.getstate()
    random.seed(int(rng.integers(2**63)))
    try:
        yield
    finally:
        random.setstate(state)


def tournament(individuals: Sequence[Any], k: int, size: int, rng: np.random.Generator) -> list[Any]:
    with seeded_random(rng):
        return tools.selTournament(list(individuals), k, tournsize=size)


def select_best(individuals: Sequence[Any], k: int, multi_objective: bool) -> list[Any]:
    """The k survivors: plain ranking, or NSGA-II (non-dominated sorting with crowding).

    Failed individuals always rank last: they carry the worst possible values, and are
    kept out of NSGA-II, whose crowding distance cannot handle infinities.
    """
    ok = [ind for ind in individuals if ind.ok]
    failed = [ind for ind in individuals if not ind.ok]
    if multi_objective:
        chosen = tools.selNSGA2(ok, min(k, len(ok))) if ok else []
    else:
        chosen = tools.selBest(ok, min(k, len(ok)))
    return chosen + failed[: k - len(chosen)]


def hall_of_fame(size: int, multi_objective: bool) -> tools.HallOfFame:
    same = lambda a, b: dict(a) == dict(b)  # noqa: E731  genome identity, not object identity
    return tools.ParetoFront(same) if multi_objective else tools.HallOfFame(size, similar=same)
