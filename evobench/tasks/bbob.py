"""BBOB functions (from the ``ioh`` package) behind a mixed search space, as a fitness.

The space has the kinds a QLoRA search has: plain floats, log-scaled floats, integers,
nominal categoricals and ordered choices. Each gene's value maps to its unit interval
(nominal choices through a fixed shuffle, so their order carries no information) and from
there onto one BBOB coordinate in [-5, 5]. The objective is the precision
``f(x) - f(x*)``, minimised.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from evo import SearchSpace
from evo.trial import FitnessBase, Objective, Trial, TrialResult

# All 24 BBOB functions, named as the BBOB documentation does (f10, f15: the rotated ellipsoid and
# Rastrigin; f2, f3: their separable forms); the default problem set is the six of FUNCTIONS.
BBOB_NAMES = {
    1: "sphere", 2: "ellipsoid separable", 3: "rastrigin separable", 4: "bueche-rastrigin", 5: "linear slope", 6: "attractive sector",
    7: "step ellipsoid", 8: "rosenbrock", 9: "rosenbrock rotated", 10: "ellipsoid", 11: "discus",
    12: "bent cigar", 13: "sharp ridge", 14: "different powers", 15: "rastrigin", 16: "weierstrass",
    17: "schaffers f7", 18: "schaffers f7 ill-cond.", 19: "griewank-rosenbrock", 20: "schwefel",
    21: "gallagher 101", 22: "gallagher 21", 23: "katsuura", 24: "lunacek bi-rastrigin",
}  # fmt: skip
FUNCTIONS = {f: BBOB_NAMES[f] for f in (1, 7, 8, 10, 15, 21)}
DIMENSIONS = (5, 10)
FLOOR = 1e-8  # precision below which a problem counts as solved; keeps log10 finite
KINDS = ("float", "log_float", "int", "categorical", "ordered")
CHOICES = 12  # levels of the categorical and ordered-choice genes


def mixed_space(dim: int) -> SearchSpace:
    """``dim`` genes, one per BBOB coordinate, cycling through the gene kinds."""
    spec: dict[str, dict[str, Any]] = {}
    for i in range(dim):
        kind = KINDS[i % len(KINDS)]
        name = f"x{i}_{kind}"
        if kind == "float":
            spec[name] = {"type": "float", "low": -1.0, "high": 1.0}
        elif kind == "log_float":
            spec[name] = {"type": "log_float", "low": 1e-5, "high": 1e-1}
        elif kind == "int":
            spec[name] = {"type": "int", "low": 0, "high": 40}
        elif kind == "categorical":
            spec[name] = {"type": "categorical", "choices": [f"c{j}" for j in range(CHOICES)]}
        else:
            spec[name] = {"type": "categorical", "choices": [f"o{j}" for j in range(CHOICES)], "ordered": True}
    return SearchSpace.from_spec(spec)


def _shuffle(name: str) -> list[int]:
    """A fixed permutation of a nominal gene's levels, the same in every process."""
    digest = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    return [int(i) for i in np.random.default_rng(digest).permutation(CHOICES)]


class BBOBFitness(FitnessBase):
    """A BBOB function (``ioh``) behind a mixed search space, as an :class:`evo.trial.Fitness`.

    Keeps the precision of every evaluation, in order, in ``trace``: the anytime curve.
    """

    objectives = (Objective("precision"),)

    def __init__(self, function: int, dim: int, instance: int):
        import ioh

        self.function, self.dim, self.instance = function, dim, instance
        self.problem = ioh.get_problem(function, instance, dim, ioh.ProblemClass.BBOB)
        self.space = mixed_space(dim)
        self.shuffles = {g.name: _shuffle(g.name) for g in self.space if g.nominal}
        self.trace: list[float] = []

    def fingerprint(self) -> str:
        return f"bbob-f{self.function}-d{self.dim}-i{self.instance}-mixed"

    def point(self, config: Mapping[str, Any]) -> list[float]:
        x = []
        for gene in self.space:
            value = config[gene.name]
            if gene.nominal:
                u = self.shuffles[gene.name][gene.index(value)] / (CHOICES - 1)
            else:
                u = gene.to_unit(value)
            x.append(-5.0 + 10.0 * u)
        return x

    def __call__(self, config: Mapping[str, Any]) -> float:
        precision = max(FLOOR, float(self.problem(self.point(config))) - float(self.problem.optimum.y))
        self.trace.append(precision)
        return precision

    def evaluate(self, trial: Trial) -> TrialResult:
        return TrialResult.complete({"precision": self(trial.config)})
