"""The surrogate as a fitness: answers as the QLoRA fitness that collected the data would.

benchmark_fidelity.py's ``smollm2-surrogate`` task runs every tuner on it; a trial answers
in about a millisecond.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evo.trial import FitnessBase, Objective, Trial, TrialResult
from evobench.tasks.qlora_data import DATA_FILE, budget_steps, load_data, trial_config
from evobench.tasks.surrogate import MODEL, TrialSurrogate, fit_surrogate, held_out_sigma
from fitness.qlora.export import split_sections
from fitness.qlora.genes import GENES, STRUCTURAL_GENES
from fitness.synthetic import read_checkpoint

DEFAULTS = {name: decl.default for name, decl in GENES.items()}  # what the QLoRA fitness trains without a gene
CHECKPOINT_FILE = "surrogate_checkpoint.json"


@dataclass
class _Progress:
    """Where a trial stands; a checkpoint stores it. ``offset`` is added to the model's log
    perplexity of ``genome``: 0 until a continued trial changes genes (PBT), then it keeps
    the curve where the checkpoint left it and lets the new genes' model curve move it."""

    data_seed: int
    genome: dict[str, Any]
    step: int = 0
    offset: float = 0.0
    curve: list[list[float]] = field(default_factory=list)


class SurrogateFitness(FitnessBase):
    """Answers as the QLoRA fitness that collected the data would, from the surrogate: same
    genes, step counts, validation points (every ``eval_every`` steps and at the end),
    checkpoints and median-rule pruning. It has no training loss, so ``EarlyStop.loss_ratio``
    stops nothing. Config keys outside the data's search space are ignored."""

    structural_genes = STRUCTURAL_GENES
    intermediate_values = True
    genes = GENES
    objectives = (Objective("val_perplexity"),)

    def __init__(
        self, surrogate: TrialSurrogate, *, eval_every: int, identity: str, noise: float = 0.0, trials: int = 0
    ) -> None:
        self.surrogate, self.eval_every, self.identity = surrogate, eval_every, identity
        self.noise, self.trials = noise, trials  # noise: sigma of log perplexity, seeded by the trial's seed

    @classmethod
    def from_file(
        cls, path: Path | str = DATA_FILE, *, model: str = MODEL, noise: bool = False, first: int | None = None
    ) -> SurrogateFitness:
        """Fit ``model`` on every trial of the file; ``noise`` adds Gaussian noise in log
        perplexity with the robust sigma of the held-out residuals (one more fit)."""
        data = load_data(path, first)
        sigma = held_out_sigma(data, model) if noise else 0.0
        identity = json.dumps([data.header.get("collection"), sorted(t["index"] for t in data.trials), model, sigma])
        return cls(
            fit_surrogate(data, data.trials, model),
            eval_every=int(data.header.get("eval_every") or 0),
            identity=hashlib.sha256(identity.encode()).hexdigest()[:12],
            noise=sigma,
            trials=len(data.trials),
        )

    def fingerprint(self) -> str:
        return f"qlora-surrogate-{self.identity}"

    def describe(self) -> dict[str, Any]:
        return {"surrogate": self.surrogate.name, "trials": self.trials, "noise": self.noise}

    @staticmethod
    def export_sections(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        return split_sections(config)

    def evaluate(self, trial: Trial) -> TrialResult:
        if not 0.0 < trial.fidelity <= 1.0:
            raise ValueError(f"fidelity={trial.fidelity!r}: must be in (0, 1]")
        c = {**DEFAULTS, **trial.config}
        genome = {name: c[name] for name in self.surrogate.space.names}
        steps = budget_steps(trial.budget, c)
        target = max(1, round(trial.fidelity * steps))
        run = self._resume(Path(trial.resume_from), c, genome, steps) if trial.resume_from else None
        run = run or _Progress(trial.seed, genome)
        start = run.step
        marks = [
            s for s in range(start + 1, target + 1) if s == target or (self.eval_every and s % self.eval_every == 0)
        ]
        marks = marks or [start]  # resumed at (or past) its target: scored again, nothing trained
        # the whole curve at once, whatever the fidelity: a prediction's last bits depend on the batch
        # it is made in, and a trial continued from a checkpoint must end exactly where one run does
        levels = self.surrogate.predict(genome, [s / steps for s in range(1, steps + 1)]) + run.offset
        early = trial.early_stop
        for step in marks:
            level = levels[step - 1]
            z = np.random.default_rng([run.data_seed, step]).normal(0.0, self.noise) if self.noise else 0.0
            value = math.exp(float(level) + z)
            if run.curve and run.curve[-1][0] == step:
                run.curve[-1] = [step, value]
            else:
                run.curve.append([step, value])
            run.step = step
            if step < target and early is not None and early.prunes(step / steps, value):
                message = (
                    f"val_perplexity {value:.4g} worse than the early-stopping threshold {early.threshold_at(step / steps):.4g} "
                    f"at step {step}/{steps}"
                )
                metrics = {**self._metrics(run, start, steps, trial, c), "pruned_at_step": step}
                return TrialResult.pruned({"val_perplexity": value}, message, metrics=metrics)
        metrics = self._metrics(run, start, steps, trial, c)
        if trial.checkpoint_dir is not None:
            self._save(Path(trial.checkpoint_dir), run, steps, c)
            metrics["checkpoint_path"] = str(trial.checkpoint_dir)
        return TrialResult.complete({"val_perplexity": run.curve[-1][1]}, metrics=metrics)

    @staticmethod
    def _metrics(run: _Progress, start: int, steps: int, trial: Trial, c: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "val_perplexity_curve": [list(p) for p in run.curve],
            "steps": run.step,
            "start_step": start,
            "budget_steps": steps,
            "fidelity": trial.fidelity,
            "train_tokens": (run.step - start) * trial_config(c).tokens_per_step,  # this trial's only
        }

    # -- checkpoints ---------------------------------------------------------------------
    def _save(self, directory: Path, run: _Progress, steps: int, c: Mapping[str, Any]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "step": run.step,
            "budget_steps": steps,
            "offset": run.offset,
            "genome": run.genome,
            "data_seed": run.data_seed,
            "val_perplexity_curve": run.curve,
            "structure": {k: c.get(k) for k in sorted(STRUCTURAL_GENES)},
        }
        (directory / CHECKPOINT_FILE).write_text(json.dumps(state))

    def _resume(self, directory: Path, c: Mapping[str, Any], genome: dict[str, Any], steps: int) -> _Progress:
        state = read_checkpoint(directory / CHECKPOINT_FILE, c)
        offset, done = state["offset"], state["step"] / state["budget_steps"]
        if genome != state["genome"]:  # continue from the checkpoint's level along the new genes' curve
            old, new = (self.surrogate.predict(g, [done])[0] for g in (state["genome"], genome))
            offset += float(old - new)
        scale = steps / state["budget_steps"]  # other batch genes: the fraction done carries over
        curve = [[round(s * scale, 3) if scale != 1 else s, v] for s, v in state["val_perplexity_curve"]]
        return _Progress(state["data_seed"], genome, round(state["step"] * scale), offset, curve)
