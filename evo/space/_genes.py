"""Typed hyperparameter genes and the search space they form.

Every ordered gene (float, log float, int) maps to a unit interval ``[0, 1]``, linear
or logarithmic, so that mutation, blending and diversity work the same way for all
of them and bounds and types hold by construction: values leave the unit space only
through :meth:`Gene.from_unit`, which rounds and clips.
"""

from __future__ import annotations

import enum
import functools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from evo.trial import ConfigError

FLOAT_DIGITS = 3  # significant digits kept for float genes: 1.23e-3 and 1.2301e-3 are one genome


class GeneKind(str, enum.Enum):
    LOG_FLOAT = "log_float"
    FLOAT = "float"
    INT = "int"
    CATEGORICAL = "categorical"
    BOOL = "bool"


_ALLOWED_KEYS = {
    GeneKind.LOG_FLOAT: {"type", "low", "high"},
    GeneKind.FLOAT: {"type", "low", "high", "step"},
    GeneKind.INT: {"type", "low", "high", "step", "choices", "log"},
    GeneKind.CATEGORICAL: {"type", "choices", "ordered"},
    GeneKind.BOOL: {"type"},
}


def _round_sig(x: float, digits: int = FLOAT_DIGITS) -> float:
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(f"{x:.{digits - 1}e}")


@dataclass(frozen=True)
class Gene:
    """One searched hyperparameter. Build it with :func:`gene_from_spec`.

    ``choices`` is set for categorical genes and for ints restricted to a list
    (e.g. LoRA rank in 8, 16, 32); ``ordered`` says whether neighbouring choices
    are similar, which decides between neighbour moves and resampling.
    """

    name: str
    kind: GeneKind
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] | None = None
    log: bool = False
    ordered: bool = False

    # -- classification -------------------------------------------------------------
    @property
    def nominal(self) -> bool:
        """True when values have no order: crossover swaps them, mutation resamples."""
        return self.kind is GeneKind.BOOL or (self.kind is GeneKind.CATEGORICAL and not self.ordered)

    # -- sampling ---------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Any:
        if self.kind is GeneKind.BOOL:
            return bool(rng.integers(2))
        if self.choices is not None:
            return _plain(self.choices[int(rng.integers(len(self.choices)))])
        return self.from_unit(float(rng.random()))

    def _bounds(self) -> tuple[float, float]:
        """``(low, high)`` of a ranged gene (no choices, not bool); gene_from_spec always sets both."""
        assert self.low is not None and self.high is not None, f"{self.name}: ranged gene without bounds"
        return self.low, self.high

    # -- unit-interval mapping (ordered genes) ----------------------------------------
    def to_unit(self, value: Any) -> float:
        if self.kind is GeneKind.BOOL:
            return 1.0 if value else 0.0
        if self.choices is not None:
            n = len(self.choices)
            return self.index(value) / (n - 1) if n > 1 else 0.0
        low, high = self._bounds()
        lo, hi, v = float(low), float(high), float(value)
        if self.log:
            lo, hi, v = math.log(lo), math.log(hi), math.log(max(v, float(low)))
        return min(1.0, max(0.0, (v - lo) / (hi - lo)))

    def from_unit(self, u: float) -> Any:
        u = min(1.0, max(0.0, float(u)))
        if self.kind is GeneKind.BOOL:
            return u >= 0.5
        if self.choices is not None:
            return _plain(self.choices[int(round(u * (len(self.choices) - 1)))])
        low, high = self._bounds()
        lo, hi = float(low), float(high)
        x = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))) if self.log else lo + u * (hi - lo)
        return self.clip(x)

    def from_share(self, u: float) -> Any:
        """The value at ``u`` in [0, 1) when each of a discrete gene's n values owns an equal 1/n
        of the interval (``from_unit`` gives the two end values half a share), so that evenly
        spread points (Sobol) spread evenly over the values too."""
        n = self.levels
        if n is not None and n > 1:
            u = min(int(u * n), n - 1) / (n - 1)
        return self.from_unit(u)

    @property
    def levels(self) -> int | None:
        """How many evenly spaced values the gene takes in its unit interval; None when continuous."""
        if self.kind is GeneKind.BOOL:
            return 2
        if self.choices is not None:
            return len(self.choices)
        if self.log:
            return None
        step = self.step or (1 if self.kind is GeneKind.INT else None)
        low, high = self._bounds()
        return round((high - low) / step) + 1 if step else None

    # -- bounds -----------------------------------------------------------------------
    def contains(self, value: Any) -> bool:
        if self.kind is GeneKind.BOOL:
            return isinstance(value, bool)
        if self.choices is not None:
            return _choice_key(value) in self._positions
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind is GeneKind.INT and value != int(value):
            return False
        low, high = self._bounds()
        return low <= value <= high

    def clip(self, value: Any) -> Any:
        """The nearest legal value: rounded to the step or int, inside the bounds."""
        if self.kind is GeneKind.BOOL:
            return bool(value)
        if self.choices is not None:
            if self.contains(value):
                return _plain(value)
            if self.kind is GeneKind.INT and isinstance(value, (int, float)):
                return min(self.choices, key=lambda c: abs(c - value))
            raise ValueError(f"{value!r} is not one of the choices of {self.name}")
        low, high = self._bounds()
        x = min(float(high), max(float(low), float(value)))
        if self.step:
            x = low + round((x - low) / self.step) * self.step
            x = min(float(high), max(float(low), x))
        if self.kind is GeneKind.INT:
            return int(round(x))
        x = _round_sig(x) if self.log or not self.step else round(x, 10)
        return min(float(high), max(float(low), x))  # rounding may step past a bound

    def index(self, value: Any) -> int:
        position = self._positions.get(_choice_key(value))
        if position is None:
            raise ValueError(f"{value!r} is not one of the choices of {self.name}")
        return position

    @functools.cached_property
    def _positions(self) -> dict[Any, int]:
        """Each choice's canonical text and index, made once: a surrogate encodes every
        observation's genes at each breeding."""
        positions: dict[Any, int] = {}
        for i, choice in enumerate(self.choices or ()):
            positions.setdefault(_choice_key(choice), i)
        return positions


def _plain(value: Any) -> Any:
    """Choices may be lists (target-module sets): hand out fresh copies, never shared ones."""
    return list(value) if isinstance(value, (list, tuple)) else value


_SCALARS = (str, int, float, bool, type(None))


def _choice_key(value: Any) -> Any:
    """What identifies a choice, as ``canonical`` does (1, 1.0 and True differ; a tuple is
    its list) but without JSON for plain scalars: the surrogate looks up every gene of
    every observation at each breeding."""
    return (type(value), value) if type(value) in _SCALARS else canonical(value)


def canonical(value: Any) -> str:
    """A stable text form for equality and hashing of gene values and genomes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _number(name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"search_space.{name}.{key}: expected a finite number, got {value!r}")
    return value


def gene_from_spec(name: str, spec: Any) -> Gene:
    """Validate one ``search_space`` entry of a run config and build its gene."""
    where = f"search_space.{name}"
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a mapping with a 'type', got {spec!r}")
    try:
        kind = GeneKind(spec.get("type"))
    except ValueError:
        known = ", ".join(k.value for k in GeneKind)
        raise ConfigError(f"{where}.type: unknown gene type {spec.get('type')!r} (known: {known})") from None
    extra = set(spec) - _ALLOWED_KEYS[kind]
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(extra))} for a {kind.value} gene")

    if kind is GeneKind.BOOL:
        return Gene(name, kind, choices=(False, True))

    if "choices" in spec:
        ranged = sorted(set(spec) & {"low", "high", "step", "log"})
        if ranged:  # either would be silently ignored
            raise ConfigError(
                f"{where}: has both choices and {', '.join(ranged)}; give choices, or a range (low, high), not both"
            )
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices: must be a non-empty list")
        keys = [canonical(c) for c in choices]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"{where}.choices: has duplicates")
        if kind is GeneKind.INT:
            if any(isinstance(c, bool) or not isinstance(c, int) for c in choices):
                raise ConfigError(f"{where}.choices: an int gene takes whole numbers only")
            return Gene(name, kind, choices=tuple(sorted(choices)), ordered=True)
        return Gene(name, kind, choices=tuple(choices), ordered=bool(spec.get("ordered", False)))
    if kind is GeneKind.CATEGORICAL:
        raise ConfigError(f"{where}.choices: a categorical gene needs a non-empty list of choices")

    for key in ("low", "high"):
        if key not in spec:
            raise ConfigError(f"{where}.{key}: missing")
    low, high = _number(name, "low", spec["low"]), _number(name, "high", spec["high"])
    if low >= high:
        raise ConfigError(f"{where}: low ({low}) must be below high ({high})")
    log = kind is GeneKind.LOG_FLOAT or bool(spec.get("log", False))
    if log and low <= 0:
        raise ConfigError(f"{where}.low: a log-scaled range needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None:
        step = _number(name, "step", step)
        if step <= 0:
            raise ConfigError(f"{where}.step: must be > 0, got {step}")
        if step > high - low:
            raise ConfigError(f"{where}.step: {step} is wider than the range {low}..{high}")
    if kind is GeneKind.INT:
        if low != int(low) or high != int(high) or (step is not None and step != int(step)):
            raise ConfigError(f"{where}: an int gene needs whole-number low, high and step")
        low, high = int(low), int(high)
        step = int(step) if step is not None else None
    return Gene(name, kind, low=low, high=high, step=step, log=log)


class SearchSpace:
    """An ordered set of genes; genomes are plain dicts ``{gene name: value}``."""

    def __init__(self, genes: Iterable[Gene]):
        self.genes: dict[str, Gene] = {}
        for gene in genes:
            if gene.name in self.genes:
                raise ConfigError(f"search_space.{gene.name}: defined twice")
            self.genes[gene.name] = gene
        if not self.genes:
            raise ConfigError("search_space: no genes to search")

    @classmethod
    def from_spec(cls, spec: Any) -> SearchSpace:
        if not isinstance(spec, Mapping) or not spec:
            raise ConfigError("search_space: expected a non-empty mapping of gene name to gene spec")
        return cls(gene_from_spec(str(name), gene) for name, gene in spec.items())

    def __iter__(self):
        return iter(self.genes.values())

    def __len__(self) -> int:
        return len(self.genes)

    def to_spec(self) -> dict[str, dict[str, Any]]:
        """The ``search_space`` mapping of a run config that builds this space again."""
        spec: dict[str, dict[str, Any]] = {}
        for g in self:
            entry: dict[str, Any] = {"type": g.kind.value}
            if g.kind is GeneKind.BOOL:
                pass
            elif g.choices is not None:
                entry["choices"] = [_plain(c) for c in g.choices]
                if g.kind is GeneKind.CATEGORICAL and g.ordered:
                    entry["ordered"] = True
            else:
                entry.update(low=g.low, high=g.high)
                if g.step is not None:
                    entry["step"] = g.step
                if g.log and g.kind is GeneKind.INT:
                    entry["log"] = True
            spec[g.name] = entry
        return spec

    @property
    def names(self) -> list[str]:
        return list(self.genes)

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        return {g.name: g.sample(rng) for g in self}

    def space_filling(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        """``n`` genomes at the first points of a scrambled Sobol sequence (scipy): a first
        population that covers every gene's range evenly, which ``n`` random draws seldom do."""
        from scipy.stats import qmc

        if n <= 0:
            return []
        sobol = qmc.Sobol(d=len(self), scramble=True, seed=int(rng.integers(2**63)))
        points = sobol.random_base2(max(0, math.ceil(math.log2(n))))[:n]
        return [{g.name: g.from_share(float(u)) for g, u in zip(self, row)} for row in points]

    def contains(self, genome: Mapping[str, Any]) -> bool:
        return set(genome) == set(self.genes) and all(g.contains(genome[g.name]) for g in self)

    def adapt(self, genome: Mapping[str, Any], rng: np.random.Generator) -> tuple[dict[str, Any], list[str]]:
        """Fit a genome from another space into this one; returns it and the warnings.

        Genes this space lacks are dropped, new genes are sampled, out-of-range values
        are clipped (an unknown choice is resampled).
        """
        warnings: list[str] = []
        dropped = sorted(set(genome) - set(self.genes))
        if dropped:
            warnings.append(f"dropped gene(s) not in this search space: {', '.join(dropped)}")
        out: dict[str, Any] = {}
        for gene in self:
            if gene.name not in genome:
                out[gene.name] = gene.sample(rng)
                warnings.append(f"{gene.name}: not in the warm-start genome, sampled {out[gene.name]!r}")
                continue
            value = genome[gene.name]
            if gene.contains(value):
                out[gene.name] = _plain(value)
                continue
            try:
                out[gene.name] = gene.clip(value)
                warnings.append(f"{gene.name}: {value!r} is out of range, clipped to {out[gene.name]!r}")
            except (TypeError, ValueError):
                out[gene.name] = gene.sample(rng)
                warnings.append(f"{gene.name}: {value!r} is not a legal value, resampled {out[gene.name]!r}")
        return out, warnings

    def distance(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
        """Mean per-gene distance in [0, 1]: unit-space gap for ordered genes, mismatch for nominal."""
        total = 0.0
        for g in self:
            if g.nominal:
                total += canonical(a[g.name]) != canonical(b[g.name])
            else:
                total += abs(g.to_unit(a[g.name]) - g.to_unit(b[g.name]))
        return total / len(self)


def genome_key(genome: Mapping[str, Any]) -> str:
    return canonical(dict(genome))
