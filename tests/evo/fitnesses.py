"""Small fitnesses for loop tests: each does something real (counts, raises, returns NaN, sleeps, dies)."""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

from evo.trial import FitnessBase, Objective, TrialResult


class Sphere(FitnessBase):
    """Distance of each gene's unit value from 0.3, summed; counts its calls."""

    objectives = (Objective("loss"),)

    def __init__(self, space, tag="sphere"):
        self.space, self.tag, self.calls = space, tag, []

    def fingerprint(self):
        return self.tag

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


class Sleepy(Sphere):
    """Answers like Sphere after sleeping; first leaves DIR/<trial id>.<pid>.pid behind,
    so that a test can kill the process running the trial."""

    def __init__(self, space, pid_dir, seconds):
        super().__init__(space)
        self.pid_dir, self.seconds = Path(pid_dir), seconds

    def evaluate(self, trial):
        (self.pid_dir / f"{trial.trial_id}.{os.getpid()}.pid").touch()
        time.sleep(self.seconds)
        return super().evaluate(trial)


class KillsItsWorker(Sphere):
    """SIGKILLs the very process evaluating it, for one lora_dropout value: a native
    crash or an OOM kill, as far as the executor can tell."""

    def __init__(self, space, deadly_dropout):
        super().__init__(space)
        self.deadly_dropout = deadly_dropout

    def evaluate(self, trial):
        if trial.config["lora_dropout"] == self.deadly_dropout:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.05)
        return super().evaluate(trial)


class Schaffer(Sphere):
    """Schaffer's problem N.1: f1 = x^2, f2 = (x - 2)^2; the Pareto set is exactly 0 <= x <= 2."""

    objectives = (Objective("f1"), Objective("f2"))

    def evaluate(self, trial):
        x = trial.config["x"]
        return TrialResult.complete({"f1": x * x, "f2": (x - 2.0) ** 2})
