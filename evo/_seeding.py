"""Seeding a new run from the population of an earlier one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evo._space import SearchSpace, canonical
from evo.storage import RunStore, StoreError
from evo.trial import ConfigError


def seed_genomes_from(
    source_dir: Path | str,
    space: SearchSpace,
    *,
    generation: int | None = None,
    top_k: int | None = None,
    seed: int = 0,
) -> tuple[list[dict[str, Any]], list[str], RunStore]:
    """Genomes of a previous run's population, fitted to ``space``.

    Takes the population of ``generation`` (default: the last finished one), best
    first, the first ``top_k`` of them. Returns the genomes, the warnings about genes
    dropped, sampled or clipped, and the opened source store (for reusing results).
    """
    try:
        source = RunStore.open(source_dir)
    except StoreError as exc:
        raise ConfigError(f"--seed-from: {exc}") from None
    finished = source.finished_generations()
    if not finished:
        source.close()
        raise ConfigError(f"--seed-from {source_dir}: the run has no finished generation to seed from")
    gen = finished[-1] if generation is None else generation
    if gen not in finished:
        source.close()
        raise ConfigError(f"--seed-generation {gen}: {source_dir} has generations {finished[0]}..{finished[-1]}")
    if top_k is not None and top_k < 1:
        source.close()
        raise ConfigError(f"--seed-top-k: must be >= 1, got {top_k}")
    members = source.population(gen)[:top_k]
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2**31,)))
    genomes: list[dict[str, Any]] = []
    warnings: list[str] = []
    seen: set[str] = set()
    for member in members:
        genome, notes = space.adapt(member.genome, rng)
        if canonical(genome) in seen:
            continue  # two old genomes that differ only in dropped genes
        seen.add(canonical(genome))
        genomes.append(genome)
        warnings.extend(f"seed individual {member.id}: {note}" for note in notes)
    return genomes, warnings, source
