"""A synthetic fitness shaped like a LoRA tuning landscape, for tests and demos.

It answers in microseconds with numbers that behave like validation perplexity:
- the best learning rate depends on the effective LoRA step ``lr * alpha / r``
  (``alpha / sqrt(r)`` with rsLoRA) and grows with the square root of the effective
  batch, so learning rate, rank, alpha and batch size interact;
- too large a step diverges (a failed trial, as a NaN loss would), less often with
  gradient clipping;
- dropout, target modules, scheduler, warmup and weight decay have smaller effects;
- a larger budget lowers perplexity; noise is seeded by the trial seed, so a trial
  is reproducible.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

import numpy as np

from evo.trial import (
    Budget,
    ConfigError,
    Direction,
    FailureReason,
    Objective,
    Trial,
    TrialResult,
)

# Defaults for genes a search space leaves out: QLoRA-paper-style settings.
DEFAULTS = {
    "learning_rate": 2e-4,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "r": 64,
    "lora_alpha": 16,
    "lora_dropout": 0.1,
    "use_rslora": False,
    "target_modules": "attention",
    "lr_scheduler_type": "constant",
    "warmup_ratio": 0.0,
    "weight_decay": 0.0,
    "max_grad_norm": 0.3,
    "max_seq_length": 128,
}
_SCHEDULER_GAIN = {"constant": 0.0, "constant_with_warmup": -0.01, "linear": -0.02, "cosine": -0.03}
_MODULE_GAIN = {"all-linear": -0.05, "mlp": -0.02, "attention": 0.0}
_METRICS = {  # objectives this fitness can report, besides perplexity
    "val_perplexity": Direction.MINIMIZE,
    "peak_memory_mb": Direction.MINIMIZE,
    "trainable_params": Direction.MINIMIZE,
    "tokens_per_second": Direction.MAXIMIZE,
}


@dataclass(frozen=True)
class SyntheticSpec:
    """The ``fitness:`` section of a run config for ``type: synthetic``."""

    type: str = "synthetic"
    base_perplexity: float = 12.0  # the perplexity of a perfectly tuned config at budget 100 steps
    noise: float = 0.01  # log-normal sigma of the measurement noise
    failure_rate: float = 0.0  # fraction of trials that raise an error (seeded), to exercise failures
    seconds_per_trial: float = 0.0  # sleep per trial, to simulate training time (the mean, with a spread)
    duration_spread: float = 0.0  # log-normal sigma of the sleep; 0.5-1 looks like real trials of mixed configs
    objectives: tuple[str, ...] = ("val_perplexity",)

    def __post_init__(self) -> None:
        if self.base_perplexity <= 1:
            raise ConfigError(f"fitness.base_perplexity: must be > 1, got {self.base_perplexity}")
        if not 0 <= self.noise < 1:
            raise ConfigError(f"fitness.noise: must be in [0, 1), got {self.noise}")
        if not 0 <= self.failure_rate <= 1:
            raise ConfigError(f"fitness.failure_rate: must be in [0, 1], got {self.failure_rate}")
        if self.seconds_per_trial < 0:
            raise ConfigError(f"fitness.seconds_per_trial: must be >= 0, got {self.seconds_per_trial}")
        if not 0 <= self.duration_spread <= 3:
            raise ConfigError(f"fitness.duration_spread: must be in [0, 3], got {self.duration_spread}")
        if not self.objectives:
            raise ConfigError("fitness.objectives: needs at least one objective")
        for name in self.objectives:
            if name not in _METRICS:
                raise ConfigError(f"fitness.objectives: unknown objective {name!r} (known: {', '.join(_METRICS)})")


class SyntheticFitness:
    def __init__(self, spec: SyntheticSpec = SyntheticSpec()):
        self.spec = spec
        self.objectives = tuple(Objective(n, _METRICS[n]) for n in spec.objectives)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "SyntheticFitness":
        known = {f.name for f in fields(SyntheticSpec)}
        extra = set(spec) - known
        if extra:
            raise ConfigError(f"fitness.{sorted(extra)[0]}: unknown key for the synthetic fitness")
        values = dict(spec)
        if "objectives" in values:
            if not isinstance(values["objectives"], (list, tuple)):
                raise ConfigError("fitness.objectives: expected a list of objective names")
            values["objectives"] = tuple(values["objectives"])
        try:
            return cls(SyntheticSpec(**values))
        except TypeError as exc:
            raise ConfigError(f"fitness: {exc}") from None

    def fingerprint(self) -> str:
        spec = asdict(self.spec)
        for timing in ("seconds_per_trial", "duration_spread"):  # time spent does not change the answer
            spec.pop(timing)
        return "synthetic-" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]

    def close(self) -> None:
        pass

    def duration(self, trial: Trial) -> float:
        """Seconds this trial sleeps: log-normal around ``seconds_per_trial`` (its mean),
        drawn from its own stream so that timing never changes the answer."""
        sigma = self.spec.duration_spread
        z = np.random.default_rng([trial.seed, 1]).normal() if sigma else 0.0
        return self.spec.seconds_per_trial * math.exp(sigma * z - sigma**2 / 2)

    def evaluate(self, trial: Trial) -> TrialResult:
        if self.spec.seconds_per_trial:
            time.sleep(self.duration(trial))
        rng = np.random.default_rng(trial.seed)
        if rng.random() < self.spec.failure_rate:
            raise RuntimeError(f"synthetic failure (seed {trial.seed})")
        c = {**DEFAULTS, **trial.config}
        steps = _steps(trial.budget, c)
        lr = float(c["learning_rate"])
        if not math.isfinite(lr) or lr <= 0:
            return TrialResult.failed(FailureReason.DIVERGED, f"loss is nan at step 1 (learning_rate={lr})")
        batch = int(c["per_device_train_batch_size"]) * int(c["gradient_accumulation_steps"])
        scale = c["lora_alpha"] / (math.sqrt(c["r"]) if c["use_rslora"] else c["r"])
        step_size = math.log10(lr * scale)
        best_step = -3.2 + 0.5 * math.log10(batch / 8)
        overshoot = step_size - best_step
        if overshoot > (1.3 if float(c["max_grad_norm"]) <= 1.0 else 1.0):
            at = max(1, int(steps * 0.2))
            return TrialResult.failed(FailureReason.DIVERGED, f"loss is nan at step {at} (learning rate too high)")

        gap = (
            0.25 * overshoot**2
            + 0.3 * (float(c["lora_dropout"]) - 0.05) ** 2
            + 0.02 * abs(math.log2(c["r"] / 16))
            + _MODULE_GAIN.get(_module_set(c["target_modules"]), 0.01)
            + _SCHEDULER_GAIN.get(c["lr_scheduler_type"], 0.0)
            + 0.2 * (float(c["warmup_ratio"]) - 0.05) ** 2
            + 0.05 * float(c["weight_decay"]) ** 2
        )
        final = self.spec.base_perplexity * math.exp(gap) * (1 + 1.5 / math.sqrt(steps)) / (1 + 1.5 / 10)
        final *= math.exp(rng.normal(0.0, self.spec.noise))
        return TrialResult.complete(self._objectives(final, c, steps, batch), metrics=self._metrics(final, c, steps, batch, rng))

    # -----------------------------------------------------------------------------------
    def _objectives(self, ppl: float, c: Mapping[str, Any], steps: int, batch: int) -> dict[str, float]:
        seq = int(c["max_seq_length"])
        measured = {
            "val_perplexity": ppl,
            "peak_memory_mb": 300.0 + 0.004 * batch * seq * (1 + 0.5 * (_module_set(c["target_modules"]) == "all-linear")) + 0.5 * c["r"],
            "trainable_params": float(c["r"] * 2 * 576 * 30 * (7 if _module_set(c["target_modules"]) == "all-linear" else 4)),
            "tokens_per_second": 400.0 * (1 + math.log2(batch)) / (1 + c["r"] / 256),
        }
        return {name: measured[name] for name in self.spec.objectives}

    def _metrics(self, ppl: float, c: Mapping[str, Any], steps: int, batch: int, rng) -> dict[str, Any]:
        """A plausible learning curve ending at the final perplexity."""
        marks = sorted({max(1, round(steps * f)) for f in (0.25, 0.5, 0.75, 1.0)})
        final_loss = math.log(ppl)
        curve = [[s, final_loss + 1.5 / math.sqrt(s) - 1.5 / math.sqrt(steps) + float(rng.normal(0, 0.02))] for s in range(1, steps + 1)]
        val = [[s, ppl * (1 + 1.5 / math.sqrt(s)) / (1 + 1.5 / math.sqrt(steps))] for s in marks]
        tokens = steps * batch * int(c["max_seq_length"])
        return {"train_loss_curve": curve, "val_perplexity_curve": val, "steps": steps, "train_tokens": tokens}


def _steps(budget: Budget, c: Mapping[str, Any]) -> int:
    if budget.tokens:
        per_step = int(c["per_device_train_batch_size"]) * int(c["gradient_accumulation_steps"]) * int(c["max_seq_length"])
        return max(1, budget.tokens // per_step)
    return budget.steps or 100


def _module_set(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        names = set(value)
        if {"gate_proj", "up_proj", "down_proj"} <= names and {"q_proj", "v_proj"} <= names:
            return "all-linear"
        if names <= {"gate_proj", "up_proj", "down_proj"}:
            return "mlp"
        return "attention" if {"q_proj", "k_proj", "v_proj", "o_proj"} <= names else "partial"
    return str(value)
