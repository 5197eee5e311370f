"""What a fitness and a run config declare about the values they accept: a gene's
:class:`GeneDecl` (and why a value is refused), a settings field's :class:`Rule`.

Part of the contract (re-exported by ``evo.trial``): plain Python, nothing heavy. The config
builds and checks settings from these rules (``evo.config``); a fitness's own settings
declare theirs the same way.
"""

from __future__ import annotations

import difflib
import enum
import math
from dataclasses import Field, dataclass
from typing import Any

from evo._errors import renamed

RULE_KEY = "evo.config.rule"  # the field metadata key a Rule sits under


class ValueKind(str, enum.Enum):
    """What kind of value a gene a fitness reads takes (see :class:`GeneDecl`)."""

    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    CATEGORICAL = "categorical"  # one of ``choices``
    MODULE_LIST = "module_list"  # one of ``choices`` (named sets) or a non-empty list of ``names``


@dataclass(frozen=True)
class GeneDecl:
    """One config key a fitness reads and the values it accepts, so that a search space,
    fixed values and a baseline can be checked against the fitness before a run starts.

    ``low``/``high`` bound FLOAT and INT values (None: unbounded), excluded when
    ``low_open``/``high_open``. ``default`` is what the fitness uses when the key is
    absent; it must itself be accepted. ``help`` says what the gene sets, in a few words.
    ``names`` are the module names a MODULE_LIST may hold, in the model's order (empty: any
    non-empty names), so that a fitness built for one model refuses what that model lacks.
    """

    name: str
    kind: ValueKind
    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] = ()
    help: str = ""
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.kind, ValueKind):
            raise TypeError(f"gene {self.name}: kind must be a ValueKind, got {self.kind!r}")
        if self.kind in (ValueKind.CATEGORICAL, ValueKind.MODULE_LIST) and not self.choices:
            raise ValueError(f"gene {self.name}: a {self.kind.value} gene needs choices")
        if self.names and self.kind is not ValueKind.MODULE_LIST:
            raise ValueError(f"gene {self.name}: only a module_list gene has names")
        problem = why_refused(self, self.default)
        if problem is not None:
            raise ValueError(f"gene {self.name}: default {self.default!r} {problem}")


def why_refused(decl: GeneDecl, value: Any) -> str | None:
    """Why ``value`` is not one ``decl`` accepts (e.g. ``"must be in [0, 1)"``), None when it is.

    Types are strict (a bool is not a number, a string is not a float); an INT also
    takes an integral float, as YAML may write one. The caller names the key and value.
    """
    kind = decl.kind
    if kind is ValueKind.BOOL:
        return None if isinstance(value, bool) else "must be true or false"
    if kind is ValueKind.CATEGORICAL:
        return None if _one_of(value, decl.choices) else f"must be one of {_listing(decl.choices)}"
    if kind is ValueKind.MODULE_LIST:
        if isinstance(value, str) and _one_of(value, decl.choices):
            return None
        if not (isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v for v in value)):
            return f"must be one of {_listing(decl.choices)} or a non-empty list of module names"
        unknown = next((v for v in value if decl.names and v not in decl.names), None)
        return None if unknown is None else _not_a_module(unknown, decl.names)
    number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not number or (kind is ValueKind.INT and not float(value).is_integer()):
        expected = "an integer" if kind is ValueKind.INT else "a finite number"
        bounded = decl.low is not None or decl.high is not None
        return f"must be {expected}" + (f" {_bounds(decl)}" if bounded else "")
    too_low = decl.low is not None and (value <= decl.low if decl.low_open else value < decl.low)
    too_high = decl.high is not None and (value >= decl.high if decl.high_open else value > decl.high)
    return f"must be {_bounds(decl)}" if too_low or too_high else None


def check_value(decl: GeneDecl, value: Any) -> str | None:
    """Deprecated since 0.2.0: the name read as if it raised. Use :func:`why_refused`."""
    renamed("evo.check_value", "evo.why_refused")
    return why_refused(decl, value)


def _one_of(value: Any, choices: tuple[Any, ...]) -> bool:
    # ``True == 1``: a bool matches only a bool
    return any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in choices)


def _listing(choices: tuple[Any, ...]) -> str:
    return ", ".join(repr(c) for c in choices)


_NAMES_SHOWN = 12  # a 100-module model's names would not fit on the one line of a ConfigError


def _not_a_module(name: str, names: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    hint = f", did you mean {close[0]!r}?" if close else ""
    shown = ", ".join(names[:_NAMES_SHOWN]) + (
        f", ... ({len(names) - _NAMES_SHOWN} more)" if len(names) > _NAMES_SHOWN else ""
    )
    return f"module {name!r} is not in the model{hint} (its linear modules: {shown})"


def _bounds(decl: GeneDecl) -> str:
    if decl.low is not None and decl.high is not None:
        return f"in {'(' if decl.low_open else '['}{decl.low:g}, {decl.high:g}{')' if decl.high_open else ']'}"
    if decl.low is not None:
        return f"{'>' if decl.low_open else '>='} {decl.low:g}"
    return f"{'<' if decl.high_open else '<='} {decl.high:g}"


@dataclass(frozen=True)
class Rule:
    """Bounds of a numeric field (any combination) and the text that explains it."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    what: str | None = None  # the noun in messages, e.g. "a probability"; default from the type
    help: str = ""

    def holds(self, value: float) -> bool:
        return not (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
        )

    def describe(self, kind: type) -> str:
        """What is accepted, as it follows "must be": ``a whole number >= 2``, ``a number in (0, 1]``."""
        noun = self.what or NOUNS.get(kind, kind.__name__)
        low = self.ge if self.ge is not None else self.gt
        high = self.le if self.le is not None else self.lt
        if low is not None and high is not None:
            opening, closing = "[" if self.ge is not None else "(", "]" if self.le is not None else ")"
            return f"{noun} in {opening}{low:g}, {high:g}{closing}"
        pairs = ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
        bounds = [f"{op} {v:g}" for op, v in pairs if v is not None]
        return " ".join([noun, *bounds])


NOUNS = {int: "a whole number", float: "a number", str: "a non-empty string", bool: "true or false"}


def rule(
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    what: str | None = None,
    help: str = "",  # the name every settings library uses, shadowing a builtin nobody calls here
) -> dict[str, Rule]:
    """Field metadata: ``field(default=..., metadata=rule(ge=1, help="..."))``."""
    return {RULE_KEY: Rule(ge=ge, gt=gt, le=le, lt=lt, what=what, help=help)}


def probability(help: str = "") -> dict[str, Rule]:
    """A chance in [0, 1]."""
    return rule(ge=0, le=1, what="a probability", help=help)


def rule_of(f: Field) -> Rule:
    """The rule a settings field declares (none: an empty rule)."""
    return f.metadata.get(RULE_KEY, Rule())
