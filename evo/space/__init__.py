"""The search space: typed genes (float, int, categorical, module lists), sampling, the
canonical form of a genome, and the type-aware mutation and crossover on them.
Below the config, which parses ``search_space:`` into a :class:`SearchSpace`."""

from __future__ import annotations

from evo.space._genes import Gene, GeneKind, SearchSpace, canonical, genome_key
from evo.space._operators import CROSSOVERS, mutate

__all__ = ["CROSSOVERS", "Gene", "GeneKind", "SearchSpace", "canonical", "genome_key", "mutate"]
