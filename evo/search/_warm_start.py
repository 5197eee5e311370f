"""A warm start: a new run's first population taken from the population of an earlier one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evo.space import SearchSpace, canonical
from evo.storage import RunStore, StoreError
from evo.trial import ConfigError, renamed


def genomes_from_run(
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
        source = RunStore.read(source_dir)
    except StoreError as exc:
        raise ConfigError(f"--warm-start: {exc}") from None
    finished = source.finished_generations()
    if not finished:
        source.close()
        raise ConfigError(f"--warm-start {source_dir}: the run has no finished generation to start from")
    gen = finished[-1] if generation is None else generation
    if gen not in finished:
        source.close()
        raise ConfigError(f"--warm-start-generation {gen}: {source_dir} has generations {finished[0]}..{finished[-1]}")
    if top_k is not None and top_k < 1:
        source.close()
        raise ConfigError(f"--warm-start-top-k: must be >= 1, got {top_k}")
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
        warnings.extend(f"warm start, individual {member.id}: {note}" for note in notes)
    return genomes, warnings, source


def seed_genomes_from(*args: Any, **kwargs: Any) -> tuple[list[dict[str, Any]], list[str], RunStore]:
    """Deprecated since 0.2.0 ("seed" is the random seed): use :func:`genomes_from_run`."""
    renamed("evo.seed_genomes_from", "evo.genomes_from_run")
    return genomes_from_run(*args, **kwargs)
