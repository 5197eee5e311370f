"""Rules declared once, beside each settings field, and one builder for every section.

A field's type annotation says what kind of value it takes (``int``: a whole number,
``float``: a finite number, ``str``, an enum, a nested settings section, ``X | None``:
also null); its :func:`rule` adds the bounds and the help text::

    population_size: int = field(default=8, metadata=rule(ge=2, help="mu"))

:func:`build` turns a config mapping into a settings dataclass (unknown keys, enum
values by name, nested sections); each class's ``__post_init__`` calls
:func:`check_fields`, so objects built in Python are checked by the same rules. Every
mistake is a :class:`~evo.trial.ConfigError` whose one line names the full key path,
the bad value and what is accepted. bool is not a number here, although Python says so.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from evo._declarations import NOUNS, Rule, probability, rule, rule_of
from evo.trial import ConfigError

__all__ = [
    "Rule",
    "build",
    "check_field",
    "check_fields",
    "check_setting",
    "probability",
    "rule",
    "section",
    "unknown_key",
]

T = TypeVar("T")


@dataclass(frozen=True)
class _Spec:
    """What one field accepts, read from its annotation and its rule."""

    kind: type | None  # None: not checked here (mappings, the search space, ...)
    optional: bool  # None (YAML null) is accepted
    rule: Rule


def _specs(cls: type) -> dict[str, _Spec]:
    """Read on every check: a handful of constructions per run, so no cache to keep."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        kind, optional = hints[f.name], False
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            optional = len(args) < len(typing.get_args(kind))
            kind = args[0] if len(args) == 1 else None
        checked = isinstance(kind, type) and (
            kind in NOUNS or issubclass(kind, enum.Enum) or dataclasses.is_dataclass(kind)
        )
        out[f.name] = _Spec(kind if checked else None, optional, rule_of(f))
    return out


def _key(path: str, name: object) -> str:
    return f"{path}.{name}" if path else str(name)


def _fits(kind: type, value: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is int:
        return isinstance(value, int)
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    if kind is str:
        return isinstance(value, str) and value != ""
    return isinstance(value, kind)


def check_setting(key: str, value: Any, kind: type, rule: Rule | None = None, *, optional: bool = False) -> None:
    """Raise the one-line error for ``value`` at ``key`` unless it fits ``kind`` and ``rule``."""
    rule = rule or Rule()
    if value is None and optional:
        return
    if issubclass(kind, enum.Enum):
        if not isinstance(value, kind):
            raise ConfigError(f"{key}: expected one of {_values(kind)}, got {value!r}")
    elif dataclasses.is_dataclass(kind):
        if not isinstance(value, kind):
            raise ConfigError(f"{key}: expected a mapping, true{' or null' if optional else ''}, got {value!r}")
    elif not _fits(kind, value) or (kind in (int, float) and not rule.holds(value)):
        accepted = rule.describe(kind) + (" or null" if optional else "")
        raise ConfigError(f"{key}: must be {accepted}, got {value!r}")


def check_fields(obj: Any, path: str) -> None:
    """Check every field of a settings object against its declared rule (from ``__post_init__``)."""
    for name, spec in _specs(type(obj)).items():
        if spec.kind is not None:
            check_setting(_key(path, name), getattr(obj, name), spec.kind, spec.rule, optional=spec.optional)


def check_field(cls: type, name: str, value: Any, key: str | None = None) -> None:
    """Check one value against the rule of field ``name`` of ``cls``, before building it."""
    spec = _specs(cls)[name]
    if spec.kind is not None:
        check_setting(key or name, value, spec.kind, spec.rule, optional=spec.optional)


def unknown_key(path: str, name: object, known: Iterable[str], what: str = "unknown key") -> ConfigError:
    """The error for a key nobody reads, with the closest known key when one is close."""
    known = list(known)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known)}"
    return ConfigError(f"{_key(path, name)}: {what} ({hint})")


def _values(kind: type[enum.Enum]) -> str:
    return ", ".join(str(m.value) for m in kind)


def _known(kind: type[enum.Enum]) -> str:
    return "known: " + _values(kind)


def build(cls: type[T], spec: Any, path: str) -> T:
    """A settings dataclass from its config mapping at ``path`` (e.g. ``"evolution"``).

    Enum fields take their values (``"mu_plus_lambda"``), nested sections a mapping, true
    or null (see :func:`section`); the values themselves are checked by the class.
    """
    if isinstance(spec, cls):  # already built (the Python API passes settings objects)
        return spec
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {type(spec).__name__}")
    specs = _specs(cls)
    for name in spec:
        if name not in specs:
            raise unknown_key(path, name, specs)
    values = {}
    for name, value in spec.items():
        kind, key = specs[name].kind, _key(path, name)
        if isinstance(kind, type) and issubclass(kind, enum.Enum) and not isinstance(value, kind):
            try:
                value = kind(value)
            except ValueError:
                raise ConfigError(f"{key}: unknown value {value!r} ({_known(kind)})") from None
        elif isinstance(kind, type) and dataclasses.is_dataclass(kind):
            value = section(kind, value, key, optional=specs[name].optional)
        values[name] = value
    return cls(**values)


def section(cls: type[T], value: Any, key: str, *, optional: bool) -> T | None:
    """A nested settings block: a mapping, ``true`` for the defaults, or (when
    ``optional``) ``null``/``false`` for off."""
    if value is None or value is False:
        if not optional:
            raise ConfigError(f"{key}: cannot be switched off; leave it out for the defaults")
        return None
    if value is True:
        return cls()
    if isinstance(value, (cls, Mapping)):
        return build(cls, value, key)
    raise ConfigError(f"{key}: expected a mapping, true{' or null' if optional else ''}, got {value!r}")
