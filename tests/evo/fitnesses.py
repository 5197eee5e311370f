"""Small fitnesses for loop tests: each does something real (counts, raises, returns NaN)."""
from __future__ import annotations

import math

from evo.trial import Objective, TrialResult


class Sphere:
    """Distance of each gene's unit value from 0.3, summed; counts its calls."""

    objectives = (Objective("loss"),)

    def __init__(self, space, tag="sphere"):
        self.space, self.tag, self.calls = space, tag, []

    def fingerprint(self):
        return self.tag

    def close(self):
        pass

    def evaluate(self, trial):
        self.calls.append(dict(trial.config))
        genes = [g for g in self.space]
        return TrialResult.complete({"loss": sum((g.to_unit(trial.config[g.name]) - 0.3) ** 2 for g in genes)})


class AlwaysRaises(Sphere):
    def evaluate(self, trial):
        self.calls.append(dict(trial.config))
        raise RuntimeError("CUDA error: device-side assert triggered")


class NonFiniteForBoolTrue(Sphere):
    """Returns NaN, inf or None as the objective when the genome's flag is set."""

    def __init__(self, space, bad):
        super().__init__(space)
        self.bad = bad

    def evaluate(self, trial):
        self.calls.append(dict(trial.config))
        if trial.config["use_rslora"]:
            return TrialResult.complete({"loss": self.bad})
        return TrialResult.complete({"loss": 1.0 + trial.config["lora_dropout"]})


class TwoObjectives(Sphere):
    objectives = (Objective("loss"), Objective("memory"))

    def evaluate(self, trial):
        x = self.space.genes["lora_dropout"].to_unit(trial.config["lora_dropout"])
        return TrialResult.complete({"loss": x, "memory": (1 - x) ** 2 + 0 * math.pi})
