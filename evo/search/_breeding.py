"""Breeding: the initial population and each generation's offspring.

A member is ``(genome, origin, parent ids)``; origins are ``init``, ``warm_start``,
``prior``, ``crossover``, ``mutation``, ``crossover+mutation`` and ``immigrant``. Children that
repeat a genome already in the population or among their siblings are mutated again,
so that no offspring slot is spent on a genome whose fitness is already known.

With a surrogate (``evolution.surrogate``), ``surrogate_candidates`` times as many
children are bred the same way and the model of :mod:`evo.search._surrogate` picks the ones
that are evaluated; immigrants stay random and unscreened.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import numpy as np

from evo.config import EvolutionSettings, Init, Surrogate
from evo.search._deap import tournament
from evo.search._surrogate import Observation, screen
from evo.space import CROSSOVERS, SearchSpace, genome_key, mutate

Candidate = tuple[dict[str, Any], str, list[int]]
_RETRIES = 20  # attempts to make a duplicate child new before accepting it (tiny spaces)
_PRIOR_SIGMA = 0.15  # a prior draw's Gaussian step on an ordered gene, as a fraction of its range (as mutation's)
_PRIOR_KEEP = 0.8  # chance a prior draw keeps the centre's value of a nominal gene


def initial_candidates(
    space: SearchSpace,
    size: int,
    rng: np.random.Generator,
    warm_start: Sequence[Mapping[str, Any]] = (),
    init: Init = Init.RANDOM,
    prior: Prior | None = None,
) -> list[Candidate]:
    """Warm-start genomes first (at most ``size``), then ``prior``'s share drawn around its centre,
    then distinct new genomes drawn as ``init`` says."""
    members: list[Candidate] = []
    seen: set[str] = set()
    for genome in warm_start[:size]:
        members.append((dict(genome), "warm_start", []))
        seen.add(genome_key(genome))
    around = round(prior.share * (size - len(members))) if prior else 0
    plan = ["prior"] * min(around, size - len(members))
    plan += ["init"] * (size - len(members) - len(plan))
    drawn = space.space_filling(plan.count("init"), rng) if init is Init.SOBOL else []

    def draw(origin: str, retry: bool) -> dict[str, Any]:
        if origin == "prior" and prior is not None:
            return _around(space, prior, rng)
        return drawn.pop(0) if drawn and not retry else space.sample(rng)

    for origin in plan:
        genome = draw(origin, retry=False)
        for _ in range(_RETRIES):
            if genome_key(genome) not in seen:
                break
            genome = draw(origin, retry=True)
        seen.add(genome_key(genome))
        members.append((genome, origin, []))
    return members


@dataclass(frozen=True)
class Prior:
    """Where a user believes good configs are: ``share`` of the initial population is drawn around ``centre``."""

    centre: Mapping[str, Any]
    share: float


def _around(space: SearchSpace, prior: Prior, rng: np.random.Generator) -> dict[str, Any]:
    """One draw from the prior: ordered genes Gaussian around the centre (reflected at the
    bounds), nominal ones the centre's value with probability ``_PRIOR_KEEP``, else any."""
    genome = {}
    for gene in space:
        value = prior.centre[gene.name]
        if gene.nominal:
            genome[gene.name] = value if rng.random() < _PRIOR_KEEP else gene.sample(rng)
            continue
        u = abs(gene.to_unit(value) + rng.normal(0.0, _PRIOR_SIGMA))
        genome[gene.name] = gene.from_unit(2 - u if u > 1 else u)
    return genome


def offspring(
    space: SearchSpace,
    parents: Sequence[Any],
    settings: EvolutionSettings,
    rng: np.random.Generator,
    history: Sequence[Observation] = (),
    known: AbstractSet[str] = frozenset(),
) -> list[Candidate]:
    """Lambda children: tournament-selected parents, crossover and/or mutation, plus immigrants.

    ``parents`` are DEAP individuals (dicts with ``fitness`` and ``id``); ``history``
    is the finished trials a surrogate screens the children with, and ``known`` the genome
    keys of every finished trial (a known genome would only be a cache hit).
    """
    crossover = CROSSOVERS[settings.crossover.value]
    n_bred = settings.lambda_ - settings.immigrants
    seen = {genome_key(p) for p in parents}
    screening = settings.surrogate is not Surrogate.NONE
    if screening:
        n_bred *= settings.surrogate_candidates
        seen |= {o.key for o in history}
    children: list[Candidate] = []

    def vary_once() -> list[Candidate]:
        if rng.random() < settings.crossover_rate and len(parents) > 1:
            a, b = tournament(parents, 2, settings.tournament_size, rng)
            pair = crossover(space, a, b, rng)
            out = []
            for child in pair:
                origin = "crossover"
                if rng.random() < settings.mutation_rate or genome_key(child) in (genome_key(a), genome_key(b)):
                    child, origin = _mutate(space, child, settings, rng), "crossover+mutation"
                out.append((child, origin, [a.id, b.id]))
            return out
        (a,) = tournament(parents, 1, settings.tournament_size, rng)
        return [(_mutate(space, a, settings, rng), "mutation", [a.id])]

    while len(children) < n_bred:
        for child, origin, ids in vary_once():
            for _ in range(_RETRIES):
                if genome_key(child) not in seen and genome_key(child) not in known:
                    break
                child = _mutate(space, child, settings, rng)
            if len(children) < n_bred:
                seen.add(genome_key(child))
                children.append((child, origin, ids))
    if screening:
        keep = screen(
            space, [c[0] for c in children], history, settings.lambda_ - settings.immigrants, settings.surrogate_gamma
        )
        children = [children[i] for i in sorted(keep)]  # breeding order, so slots do not encode the score
    for _ in range(settings.immigrants):
        genome = space.sample(rng)
        seen.add(genome_key(genome))
        children.append((genome, "immigrant", []))
    return children


def _mutate(space: SearchSpace, genome: Mapping[str, Any], settings: EvolutionSettings, rng) -> dict[str, Any]:
    return mutate(space, dict(genome), rng, gene_rate=settings.gene_mutation_rate, sigma=settings.mutation_sigma)
