"""Every config key, its default, what it accepts and what it does: ``docs/config.md``.

Read from the settings' own fields (their annotations, defaults and the ``help`` of their
rules), so the reference cannot drift from the code; ``evo reference`` writes it, and a
test fails when the committed copy is out of date. The fitness sections come from the
caller (the CLI, the one place that knows the fitness package).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from typing import Any

from evo._declarations import Rule, rule_of
from evo.config._evolution import EarlyStopping, EvolutionSettings, MultiFidelity, PBTSettings
from evo.config._executor import ExecutorSettings
from evo.config._run import _TOP_KEYS, RunConfig
from evo.config._run_budget import RunBudget
from evo.space import SearchSpace
from evo.trial import Budget, GeneDecl, ValueKind

__all__ = ["reference"]

_FIELD_OF_KEY = {"search_space": "space"}  # top-level keys whose RunConfig field is named otherwise
_NOUNS = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}


def reference(fitnesses: Mapping[str, tuple[type, Mapping[str, GeneDecl]]]) -> str:
    """The reference as markdown; ``fitnesses``: each ``fitness.type``'s settings class and genes."""
    top = {f.name: f for f in dataclasses.fields(RunConfig)}
    parts = [
        "# Every config key\n",
        "Written by `evo reference --out docs/config.md` from the settings' own fields; do not edit.",
        "A run refuses any key or value not accepted here, before anything is written.\n",
        _table("The top level", [_row(key, top[_FIELD_OF_KEY.get(key, key)], RunConfig) for key in _TOP_KEYS]),
    ]
    for title, cls in (
        ("budget", Budget),
        ("evolution", EvolutionSettings),
        ("evolution.multi_fidelity", MultiFidelity),
        ("evolution.early_stopping", EarlyStopping),
        ("evolution.pbt", PBTSettings),
        ("executor", ExecutorSettings),
        ("run_budget", RunBudget),
    ):
        parts.append(_table(f"`{title}`", _rows(cls)))
    written: dict[int, str] = {}
    for kind, (spec, genes) in fitnesses.items():
        parts.append(_table(f"`fitness` with `type: {kind}`", _rows(spec)))
        if id(genes) in written:
            parts.append(f"It reads the same genes as the `{written[id(genes)]}` fitness.\n")
            continue
        written[id(genes)] = kind
        rows = [(f"`{g.name}`", _value(g.default), _accepts_gene(g), g.help) for g in genes.values()]
        title = f"Genes the `{kind}` fitness reads (in `search_space`, `fixed`, `baseline`)"
        parts.append(_table(title, rows, head=("gene", "default", "accepts", "what it sets")))
    return "\n".join(parts)


def _rows(cls: type) -> list[tuple[str, str, str, str]]:
    return [_row(f.name, f, cls) for f in dataclasses.fields(cls) if f.init]


def _row(key: str, f: dataclasses.Field, cls: type) -> tuple[str, str, str, str]:
    declared = rule_of(f)
    kind = typing.get_type_hints(cls)[f.name]
    if f.default is not dataclasses.MISSING:
        default = _value(f.default)
    elif f.default_factory is not dataclasses.MISSING:
        made = f.default_factory()
        default = "(a section)" if dataclasses.is_dataclass(made) else _value(made)
    else:
        default = "required"
    return f"`{key}`", default, _accepts(kind, declared), declared.help


def _accepts(kind: Any, rule: Rule) -> str:
    options = typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else (kind,)
    words = [_noun(option, rule) for option in options if option is not type(None)]
    if rule.what and not set(options) & {int, float}:  # the field says it better than its types (numbers: bounds)
        words = [rule.what]
    if type(None) in options:
        words.append("null")
    return " or ".join(dict.fromkeys(words))


def _noun(kind: Any, rule: Rule) -> str:
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return "one of " + ", ".join(f"`{m.value}`" for m in kind)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return "a section (below)"
    if kind in (int, float):
        return rule.describe(kind)
    if kind in _NOUNS:
        return _NOUNS[kind]
    origin = typing.get_origin(kind)
    if origin in (tuple, list):
        return "a list"
    if origin is not None and issubclass(origin, Mapping):
        return "a mapping"
    return "a mapping" if kind is SearchSpace else getattr(kind, "__name__", str(kind))


def _accepts_gene(gene: GeneDecl) -> str:
    if gene.kind in (ValueKind.CATEGORICAL, ValueKind.MODULE_LIST):
        listed = "one of " + ", ".join(f"`{_value(c)}`" for c in gene.choices)
        return listed + (" or a list of module names" if gene.kind is ValueKind.MODULE_LIST else "")
    if gene.kind is ValueKind.BOOL:
        return "true or false"
    noun = "a whole number" if gene.kind is ValueKind.INT else "a number"
    low = "" if gene.low is None else f"{'>' if gene.low_open else '>='} {gene.low:g}"
    high = "" if gene.high is None else f"{'<' if gene.high_open else '<='} {gene.high:g}"
    return " ".join(part for part in (noun, low, "and" if low and high else "", high) if part)


def _value(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{}" if not value else str(dict(value))
    return str(value)


def _table(
    title: str, rows: list[tuple[str, str, str, str]], head=("key", "default", "accepts", "what it does")
) -> str:
    lines = [f"## {title}\n", "| " + " | ".join(head) + " |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
