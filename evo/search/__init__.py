"""The sampler: which configs are tried next. The initial population (Sobol, priors, an
earlier run's genomes), offspring by tournament selection and variation, the TPE-style
screening of bred children, DEAP's types and selection, and per-generation statistics.
The strategies decide when to call it; it never evaluates anything."""

from __future__ import annotations

from evo.search._breeding import Candidate, Prior, initial_candidates, offspring
from evo.search._deap import deap_types, hall_of_fame, select_best, tournament
from evo.search._stats import generation_record, logbook
from evo.search._surrogate import MIN_OBSERVATIONS, History, Observation
from evo.search._warm_start import genomes_from_run

__all__ = [
    "MIN_OBSERVATIONS",
    "Candidate",
    "History",
    "Observation",
    "Prior",
    "deap_types",
    "generation_record",
    "genomes_from_run",
    "hall_of_fame",
    "initial_candidates",
    "logbook",
    "offspring",
    "select_best",
    "tournament",
]
