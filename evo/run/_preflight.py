"""What only the fitness can tell about a run config, checked before anything is written.

The config checks itself (``evo.config``). What a fitness reads and accepts is declared
in its ``genes`` (:class:`evo.trial.GeneDecl`), so every searched gene, fixed value and
baseline value is checked against it here: a misspelt gene (with the closest name
suggested), a choice or a range end the fitness cannot use, an integer gene searched
as a float. Each mistake costs a second here instead of a day of trials that fail one
by one, or silently train with a default.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from evo.config import AUTO, RunConfig
from evo.optuna import check_report_to
from evo.run._plan import gene_values
from evo.space import Gene, GeneKind
from evo.trial import ConfigError, Fitness, GeneDecl, ValueKind, why_refused


def check_before_run(config: RunConfig, fitness: Fitness) -> list[str]:
    """Everything ``evo run`` checks of a config once its fitness is built, and ``evo plan``
    with it: the genes against the fitness, and the report_to backends. Raises ConfigError;
    returns warnings."""
    warnings = check_run(config, fitness)
    check_report_to(config.report_to)
    return warnings


def check_run(config: RunConfig, fitness: Fitness) -> list[str]:
    """Raise ConfigError for what cannot work; return warnings for what would do less than asked."""
    _check_genes(config, fitness)
    fitness.check_trials(gene_values(config), config.budget)
    settings = config.evolution
    if settings.multi_fidelity and len(fitness.objectives) > 1:
        names = ", ".join(o.name for o in fitness.objectives)
        raise ConfigError(f"evolution.multi_fidelity: ranks rungs by one objective; the fitness reports {names}")
    if settings.early_stopping not in (None, AUTO) and not fitness.intermediate_values:
        return [
            "evolution.early_stopping: the fitness validates only at the end of a trial, so only diverging "
            "losses will be stopped"
        ]
    return []


def _check_genes(config: RunConfig, fitness: Fitness) -> None:
    declared = fitness.genes
    if not declared:  # a fitness that reads anything: nothing to check against
        return
    kind = config.fitness.get("type", type(fitness).__name__)
    for gene in config.space:
        decl = _declared(declared, f"search_space.{gene.name}", gene.name, kind)
        _check_gene(gene, decl, kind)
    for section, values in (("fixed", config.fixed), ("baseline", config.baseline or {})):
        for name, value in values.items():
            decl = _declared(declared, f"{section}.{name}", name, kind)
            _check(f"{section}.{name}", value, decl, kind)


def _declared(declared: Mapping[str, GeneDecl], key: str, name: str, kind: str) -> GeneDecl:
    if name in declared:
        return declared[name]
    close = difflib.get_close_matches(name, list(declared), n=1, cutoff=0.6)
    names = sorted(declared)
    listed = ", ".join(names) if len(names) <= 6 else f"{', '.join(names[:4])}, ... ({len(names)}: evo reference)"
    hint = f"did you mean {close[0]!r}?" if close else f"it reads: {listed}"
    raise ConfigError(f"{key}: the {kind} fitness has no gene {name!r} ({hint})")


def _check_gene(gene: Gene, decl: GeneDecl, kind: str) -> None:
    key = f"search_space.{gene.name}"
    if decl.kind is ValueKind.INT and gene.kind in (GeneKind.FLOAT, GeneKind.LOG_FLOAT) and gene.step is None:
        raise ConfigError(f"{key}: the {kind} fitness takes whole numbers here; search it as type: int")
    if gene.kind is GeneKind.BOOL:
        for value in (False, True):
            _check(key, value, decl, kind)
    elif gene.choices is not None:
        for choice in gene.choices:
            _check(f"{key}.choices", choice, decl, kind)
    else:
        _check(f"{key}.low", gene.low, decl, kind)
        _check(f"{key}.high", gene.high, decl, kind)
        if gene.step is not None and decl.kind is ValueKind.INT:
            _check(f"{key}.step", gene.step, decl, kind, bounded=False)


def _check(key: str, value: Any, decl: GeneDecl, kind: str, *, bounded: bool = True) -> None:
    problem = why_refused(decl if bounded else GeneDecl(decl.name, decl.kind, 0), value)
    if problem is None:
        return
    words = [c for c in decl.choices if isinstance(c, str)]
    close = difflib.get_close_matches(value, words, n=1) if isinstance(value, str) else []
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"{key}: {value!r} is not accepted by the {kind} fitness: {problem}{hint}")
