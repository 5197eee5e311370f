"""Type-aware variation: mutation and crossover that keep every gene legal.

DEAP's stock operators (``mutGaussian``, ``cxBlend``) treat genomes as lists of
floats: they turn ints into floats and step over bounds. These work gene by gene
through :class:`evo.space._genes.Gene`'s unit interval instead, so a log-scaled learning
rate mutates in log space, a LoRA rank stays one of its choices, and a categorical
gene is resampled or moved to a neighbour.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from evo.space._genes import Gene, SearchSpace, canonical


def mutate_gene(gene: Gene, value: Any, rng: np.random.Generator, sigma: float) -> Any:
    """A new value for one gene; ``sigma`` is the Gaussian step in unit-interval units."""
    if gene.kind.value == "bool":
        return not value
    if gene.nominal:
        assert gene.choices is not None  # nominal genes (bool, unordered categorical) always have choices
        others = [c for c in gene.choices if canonical(c) != canonical(value)]
        if not others:
            return value
        pick = others[int(rng.integers(len(others)))]
        return list(pick) if isinstance(pick, (list, tuple)) else pick
    if gene.choices is not None:
        # Neighbour move on ordered choices: usually one place, sometimes more.
        n, i = len(gene.choices), gene.index(value)
        if n == 1:
            return value
        step = 1 + int(abs(rng.normal(0.0, sigma)) * (n - 1))
        direction = 1 if rng.random() < 0.5 else -1
        j = i + direction * step
        if not 0 <= j < n:
            j = i - direction * step
        return gene.from_unit(min(n - 1, max(0, j)) / (n - 1))
    u = gene.to_unit(value) + rng.normal(0.0, sigma)
    # Reflect at the bounds so that values near an edge do not pile up on it.
    u = -u if u < 0 else (2 - u if u > 1 else u)
    new = gene.from_unit(u)
    if canonical(new) == canonical(value) and gene.kind.value == "int":
        # An int whose step was rounded away still moves, else mutation would do nothing.
        delta = (gene.step or 1) * (1 if rng.random() < 0.5 else -1)
        new = gene.clip(value + delta)
        if new == value:
            new = gene.clip(value - delta)
    return new


def mutate(
    space: SearchSpace,
    genome: Mapping[str, Any],
    rng: np.random.Generator,
    *,
    gene_rate: float,
    sigma: float,
) -> dict[str, Any]:
    """Mutate each gene with probability ``gene_rate``; at least one gene always changes."""
    child = {k: (list(v) if isinstance(v, list) else v) for k, v in genome.items()}
    chosen = [g for g in space if rng.random() < gene_rate]
    if not chosen:
        chosen = [list(space)[int(rng.integers(len(space)))]]
    for gene in chosen:
        child[gene.name] = mutate_gene(gene, child[gene.name], rng, sigma)
    return child


def crossover_uniform(
    space: SearchSpace, a: Mapping[str, Any], b: Mapping[str, Any], rng: np.random.Generator
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each gene comes from either parent with equal chance; the second child gets the rest."""
    c1, c2 = {}, {}
    for g in space:
        x, y = a[g.name], b[g.name]
        if rng.random() < 0.5:
            x, y = y, x
        c1[g.name], c2[g.name] = x, y
    return c1, c2


def crossover_blend(
    space: SearchSpace,
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    rng: np.random.Generator,
    *,
    alpha: float = 0.5,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """BLX-alpha on the unit interval for ordered genes, uniform swap for nominal ones."""
    c1, c2 = crossover_uniform(space, a, b, rng)
    for g in space:
        if g.nominal:
            continue
        u, v = g.to_unit(a[g.name]), g.to_unit(b[g.name])
        lo, hi = min(u, v), max(u, v)
        span = hi - lo
        c1[g.name] = g.from_unit(rng.uniform(lo - alpha * span, hi + alpha * span))
        c2[g.name] = g.from_unit(rng.uniform(lo - alpha * span, hi + alpha * span))
    return c1, c2


CROSSOVERS = {"uniform": crossover_uniform, "blend": crossover_blend}
