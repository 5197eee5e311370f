"""Surrogate-assisted variation: breed many children, evaluate the promising few.

Crossover and mutation propose; a cheap model of every result in the store decides
which proposals are worth a real trial. The model is a TPE-style density ratio
(Bergstra et al. 2011, as in Optuna's multivariate TPE) over the unit-interval genome:
the observations are split into the best ``gamma`` fraction (``evolution.surrogate_gamma``)
and the rest, each group becomes a Parzen density (product kernels: Gaussian on ordered
genes, a smoothed match kernel on nominal ones, plus a uniform prior component), and a
candidate's score is ``log l(x) - log g(x)``: high where good trials are dense and bad
ones are not.

Failed trials count as bad observations (a diverged learning rate is information),
except trials whose process was killed, which say nothing about the config.
The model is rebuilt from the store at every breeding, so a resumed run screens exactly
as an uninterrupted one; observations are sorted by genome first, so the order in
which trials finished never changes a score. numpy only.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evo.space import SearchSpace, genome_key

# BANDWIDTH and NOMINAL_SMOOTHING were chosen on the tuning seeds (0-9) of experiments/benchmark_bbob.py
# (0.1 against 0.05 and 0.2; 0.3 against 0.5); the README's results use other seeds.
GAMMA = 0.1  # fraction of observations that form the "good" density (evolution.surrogate_gamma; as Optuna's)
MAX_GOOD = 25  # as Optuna: past this many, more good points only blur the density
BANDWIDTH = 0.1  # kernel width on the unit interval for one point, shrinking as n^(-1/(d+4))
MIN_BANDWIDTH = 0.02
NOMINAL_SMOOTHING = 0.3  # share of a nominal kernel's mass spread over all choices
PRIOR_WIDTH = 1.0  # sigma of the prior pseudo-point on the unit interval
MIN_OBSERVATIONS = 4  # below this the model knows too little to screen anything
# The bad density sees the most recent BAD_WINDOW observations that are not good: the cost of a model stays
# flat as a run grows, and runs of up to ~280 trials (every QLoRA run in this README) see all of them.
BAD_WINDOW = 256
RANK_WINDOW = 1024  # observations ranked by domination count with several objectives (quadratic)


@dataclass(frozen=True)
class Observation:
    """One finished trial as the surrogate sees it: its genome and its objective values,
    in the fitness's objective order, signed so that larger is better; None if it failed.
    ``generation`` orders observations by age (recent ones form the bad density)."""

    genome: Mapping[str, Any]
    score: tuple[float, ...] | None
    generation: int = 0

    @functools.cached_property
    def key(self) -> str:
        """The genome's canonical text, computed once: it orders ties and finds known genomes."""
        return genome_key(self.genome)


def _ranks(observations: Sequence[Observation]) -> np.ndarray:
    """Smaller is better: failures last; one objective by value, several by how many
    observations dominate each one (0 for the Pareto front)."""
    n = len(observations)
    ok = [o.score is not None for o in observations]
    if not any(ok):
        return np.zeros(n)
    width = len(next(o.score for o in observations if o.score is not None))
    scores = np.array([o.score if o.score is not None else (0.0,) * width for o in observations], dtype=float)
    if scores.shape[1] == 1:
        rank = -scores[:, 0]
    else:
        ge = (scores[:, None, :] >= scores[None, :, :]).all(axis=2)
        gt = (scores[:, None, :] > scores[None, :, :]).any(axis=2)
        rank = (ge & gt & np.array(ok)[:, None]).sum(axis=0).astype(float)
    return np.where(ok, rank, np.inf)


class History:
    """The observations of a run as they arrive, so that what a model reads is bounded.

    ``window()`` is what :func:`split` needs and nothing more: the best ``MAX_GOOD``
    observations ever (one objective), the most recent ``BAD_WINDOW + MAX_GOOD``, or with
    several objectives the most recent ``RANK_WINDOW``; ``known`` holds every genome key.
    Adding an observation costs O(log n), so breeding a child costs the same at 20,000
    trials as at 300, even in steady-state mode, which breeds for every trial.
    """

    def __init__(self) -> None:
        self.by_age: list[Observation] = []  # (generation, genome) order: the same after a resume
        self.known: set[str] = set()
        self._leaders: list[tuple[float, str, int, Observation]] = []  # best MAX_GOOD: (-value, key, arrival, obs)
        self._several = False
        self._arrivals = 0

    def __len__(self) -> int:
        return len(self.by_age)

    def add(self, observation: Observation) -> None:
        bisect.insort(self.by_age, observation, key=_age)
        self.known.add(observation.key)
        score = observation.score
        if score is not None and len(score) > 1:
            self._several = True
        elif score is not None:
            self._arrivals += 1
            bisect.insort(self._leaders, (-score[0], observation.key, self._arrivals, observation))
            del self._leaders[MAX_GOOD:]

    def window(self) -> list[Observation]:
        """Oldest first; :func:`split` of it equals :func:`split` of every observation."""
        if self._several:
            return self.by_age[-RANK_WINDOW:]
        recent = self.by_age[-(BAD_WINDOW + MAX_GOOD) :]
        if len(recent) == len(self.by_age):
            return list(recent)
        inside = {id(o) for o in recent}
        older_leaders = [o for *_, o in self._leaders if id(o) not in inside]
        return sorted(older_leaders, key=_age) + recent


def _age(observation: Observation) -> tuple[int, str]:
    return observation.generation, observation.key


def split(observations: Sequence[Observation], gamma: float) -> tuple[list[Observation], list[Observation]]:
    """The good observations (the best ``gamma``, at most ``MAX_GOOD``) and the bad ones.

    ``observations`` come oldest first. The good are the best of all of them; the bad are
    the most recent ``BAD_WINDOW`` others, so a model costs the same at 20,000 trials as at
    300 (a run of up to ``BAD_WINDOW + MAX_GOOD`` trials sees every one of them). Ranking
    several objectives counts dominations, which is quadratic: it sees the most recent
    ``RANK_WINDOW``. Both lists are in rank order, ties by genome, so the order in which
    trials finished never changes a score.
    """
    n_good = min(MAX_GOOD, max(1, math.ceil(gamma * len(observations))))
    several = any(o.score is not None and len(o.score) > 1 for o in observations)
    pool = list(observations[-RANK_WINDOW:] if several else observations)
    ranks = _ranks(pool)
    ranked = [(float(ranks[i]), o.key, i) for i, o in enumerate(pool)]
    best = [i for rank, _, i in heapq.nsmallest(n_good, ranked) if math.isfinite(rank)]
    chosen = set(best)
    recent: list[int] = []
    for i in range(len(pool) - 1, -1, -1):
        if len(recent) == BAD_WINDOW:
            break
        if i not in chosen:
            recent.append(i)
    others = sorted(recent, key=lambda i: (ranked[i][0], ranked[i][1]))
    return [pool[i] for i in best], [pool[i] for i in others]


class DensityRatio:
    """Parzen densities of the good and the bad observations; ``score`` ranks candidates."""

    def __init__(self, space: SearchSpace, observations: Sequence[Observation], gamma: float | None = None):
        self.space = space
        self.ordered = [g for g in space if not g.nominal]
        self.nominal = [g for g in space if g.nominal]
        good, bad = split(observations, gamma or GAMMA)
        self.good, self.bad = self._encode(good), self._encode(bad)

    def _encode(self, observations: Sequence[Observation]) -> tuple[np.ndarray, np.ndarray]:
        units = np.array([[g.to_unit(o.genome[g.name]) for g in self.ordered] for o in observations], dtype=float)
        index = np.array([[g.index(o.genome[g.name]) for g in self.nominal] for o in observations], dtype=int)
        return units.reshape(len(observations), len(self.ordered)), index.reshape(len(observations), len(self.nominal))

    def _log_density(self, units: np.ndarray, index: np.ndarray, points: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """log of (sum of the points' kernels + the prior's) / (n + 1), per candidate."""
        p_units, p_index = points
        n = len(p_units)
        if n == 0:
            return np.zeros(len(units))
        log_k = np.zeros((len(units), n))
        if self.ordered:
            sigma = max(MIN_BANDWIDTH, BANDWIDTH * n ** (-1.0 / (len(self.space) + 4)))
            z = (units[:, None, :] - p_units[None, :, :]) / sigma
            log_k += (-0.5 * z**2 - math.log(sigma * math.sqrt(2 * math.pi))).sum(axis=2)
        for j, gene in enumerate(self.nominal):
            c = len(gene.choices)
            same = index[:, None, j] == p_index[None, :, j]
            log_k += np.log(np.where(same, 1 - NOMINAL_SMOOTHING, 0.0) + NOMINAL_SMOOTHING / c) + math.log(c)
        # One prior pseudo-point keeps the ratio finite far from all points: as in Optuna, a Gaussian of the
        # whole range's width at the centre of ordered genes, uniform over nominal ones. A uniform density
        # of 1 on the cube instead drowns the kernels in more than a few dimensions, and all scores tie.
        log_prior = (-0.5 * ((units - 0.5) / PRIOR_WIDTH) ** 2 - math.log(PRIOR_WIDTH * math.sqrt(2 * math.pi))).sum(
            axis=1
        )
        stacked = np.concatenate([log_k, log_prior[:, None]], axis=1)
        top = stacked.max(axis=1, keepdims=True)
        return top[:, 0] + np.log(np.exp(stacked - top).sum(axis=1)) - math.log(n + 1)

    def score(self, genomes: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``log l(x) - log g(x)`` for each genome: larger is more promising."""
        units, index = self._encode([Observation(g, None) for g in genomes])
        return self._log_density(units, index, self.good) - self._log_density(units, index, self.bad)


def screen(
    space: SearchSpace,
    genomes: Sequence[Mapping[str, Any]],
    observations: Sequence[Observation],
    k: int,
    gamma: float = GAMMA,
) -> list[int]:
    """Indices of the ``k`` most promising genomes, best first (ties keep breeding order);
    ``gamma`` is the share of observations that form the good density.

    With fewer than ``MIN_OBSERVATIONS`` observations, or none that succeeded, the
    first ``k`` in breeding order: without data the model would only add noise.
    """
    usable = [o for o in observations if o.score is not None]
    if len(observations) < MIN_OBSERVATIONS or not usable:
        return list(range(min(k, len(genomes))))
    scores = DensityRatio(space, observations, gamma).score(genomes)
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]
