"""A synthetic fitness shaped like a LoRA tuning landscape, for tests and demos.

It answers in microseconds with numbers that behave like validation perplexity
along a training run:
- training is a state that moves, step by step, from an untrained level towards the
  config's asymptote, at a rate set by the config; log perplexity = state + noise;
- the asymptote depends on the effective LoRA step ``lr * alpha / r``
  (``alpha / sqrt(r)`` with rsLoRA), whose best value grows with the square root of
  the effective batch, so learning rate, rank, alpha and batch size interact; the
  rate grows with the step, so a too-large learning rate looks good early and loses
  late (which is what makes low-fidelity rankings imperfect, as on real runs);
- too large a step diverges (a failed trial, as a NaN loss would), less often with
  gradient clipping;
- dropout, target modules, scheduler, warmup and weight decay have smaller effects;
- measurement noise is seeded by the run's data seed and the step, so a trial is
  reproducible, and one continued from a checkpoint equals one trained in one go.

Trials honour fidelity, checkpoints (a small JSON state) and early stopping like the
QLoRA fitness, so multi-fidelity runs and PBT can be tested and benchmarked on it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from evo.config import build, check_fields, probability, rule
from evo.trial import (
    Budget,
    ConfigError,
    Direction,
    EarlyStop,
    FailureReason,
    FitnessBase,
    GeneDecl,
    Objective,
    Trial,
    TrialResult,
    why_refused,
)
from fitness.qlora.export import split_sections
from fitness.qlora.genes import GENES

# The QLoRA fitness's genes, so that a config runs on both; their defaults (QLoRA-paper-style
# settings) fill in what a search space leaves out.
DEFAULTS = {name: decl.default for name, decl in GENES.items()}
_SCHEDULER_GAIN = {"constant": 0.0, "constant_with_warmup": -0.01, "linear": -0.02, "cosine": -0.03}
_MODULE_GAIN = {"all-linear": -0.05, "mlp": -0.02, "attention": 0.0}
OBJECTIVES = {  # what ``objectives`` may list: the QLoRA fitness's measures but wall_seconds
    "val_perplexity": Direction.MINIMIZE,
    "peak_memory_mb": Direction.MINIMIZE,
    "trainable_parameters": Direction.MINIMIZE,
    "train_tokens_per_s": Direction.MAXIMIZE,
}


@dataclass(frozen=True)
class SyntheticSpec:
    """The ``fitness:`` section of a run config for ``type: synthetic``; each key's bounds sit beside it."""

    type: str = field(default="synthetic", metadata=rule(help="a LoRA-like landscape that answers in microseconds"))
    base_perplexity: float = field(
        default=12.0, metadata=rule(gt=1, help="the perplexity of a perfectly tuned config trained to convergence")
    )
    noise: float = field(default=0.01, metadata=rule(ge=0, lt=1, help="log-normal sigma of the measurement noise"))
    failure_rate: float = field(
        default=0.0, metadata=probability("fraction of trials that raise an error (seeded), to exercise failures")
    )
    seconds_per_trial: float = field(
        default=0.0, metadata=rule(ge=0, help="sleep per trial, to simulate training time (the mean, with a spread)")
    )
    duration_spread: float = field(
        default=0.0,
        metadata=rule(ge=0, le=3, help="log-normal sigma of the sleep; 0.5-1 looks like real trials of mixed configs"),
    )
    objectives: tuple[str, ...] = field(
        default=("val_perplexity",),
        metadata=rule(what=f"a list of {', '.join(OBJECTIVES)}", help="what a trial reports to select on"),
    )
    eval_every: float = field(
        default=0.125, metadata=rule(gt=0, le=1, help="intermediate validations, as a fraction of the budget")
    )

    def __post_init__(self) -> None:
        check_fields(self, "fitness")
        if not isinstance(self.objectives, tuple):
            raise ConfigError(f"fitness.objectives: expected a list of objective names, got {self.objectives!r}")
        if not self.objectives:
            raise ConfigError("fitness.objectives: needs at least one objective, got []")
        for name in self.objectives:
            if not isinstance(name, str) or name not in OBJECTIVES:
                raise ConfigError(f"fitness.objectives: unknown objective {name!r} (known: {', '.join(OBJECTIVES)})")


UNTRAINED_LEVEL = 1.0  # log-perplexity above the floor before training: e x the tuned perplexity
BASE_RATE = 0.1  # per-step approach to the asymptote at the best effective step
STRUCTURAL_GENES = frozenset({"r", "lora_alpha", "use_rslora", "target_modules", "optim"})


class SyntheticFitness(FitnessBase):
    """Answers like the QLoRA fitness, in microseconds: same genes, checkpoints and export."""

    structural_genes = STRUCTURAL_GENES
    intermediate_values = True  # validates every ``eval_every`` of the budget
    genes: Mapping[str, GeneDecl] = GENES

    def __init__(self, spec: SyntheticSpec = SyntheticSpec(), *, device: str | None = None):
        self.spec = spec
        self.objectives = tuple(Objective(n, OBJECTIVES[n]) for n in spec.objectives)
        self.device = device  # the label it was built for (for_device), reported as pinned_device

    def for_device(self, label: str) -> SyntheticFitness:
        """A copy for one device: it holds nothing to pin, but each answer says which copy gave it."""
        return SyntheticFitness(self.spec, device=label)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> SyntheticFitness:
        if isinstance(spec, Mapping) and isinstance(spec.get("objectives"), list):  # YAML gives a list
            spec = {**spec, "objectives": tuple(spec["objectives"])}
        return cls(build(SyntheticSpec, spec, "fitness"))

    def fingerprint(self) -> str:
        spec = asdict(self.spec)
        for timing in ("seconds_per_trial", "duration_spread", "eval_every"):  # they do not change the answer
            spec.pop(timing)
        return "synthetic-" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]

    @staticmethod
    def export_sections(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        return split_sections(config)

    @staticmethod
    def plan(
        spec: Mapping[str, Any],
        genes: Mapping[str, Sequence[Any]],
        budget: Budget,
        baseline: Mapping[str, Any] | None,
    ) -> None:
        """No memory and no device to plan: the spec is checked (as building it would), nothing more."""
        SyntheticFitness.from_spec(spec)
        return None

    def duration(self, trial: Trial) -> float:
        """Seconds a whole-budget trial sleeps: log-normal around ``seconds_per_trial`` (its
        mean), drawn from its own stream so that timing never changes the answer."""
        sigma = self.spec.duration_spread
        z = np.random.default_rng([trial.seed, 1]).normal() if sigma else 0.0
        return self.spec.seconds_per_trial * math.exp(sigma * z - sigma**2 / 2)

    def evaluate(self, trial: Trial) -> TrialResult:
        result = self._evaluate(trial)
        if self.device is None:
            return result
        return replace(result, metrics={**result.metrics, "pinned_device": self.device})

    def _evaluate(self, trial: Trial) -> TrialResult:
        rng = np.random.default_rng(trial.seed)
        if rng.random() < self.spec.failure_rate:
            raise RuntimeError(f"synthetic failure (seed {trial.seed})")
        c = {**DEFAULTS, **trial.config}
        lr = float(c["learning_rate"])
        if not math.isfinite(lr) or lr <= 0:
            return TrialResult.failed(FailureReason.DIVERGED, f"loss is nan at step 1 (learning_rate={lr})")
        _check_genes(trial.config)
        run = _Run.start(trial, c, self.spec.base_perplexity)
        outcome = run.train(self.spec.noise, self.spec.eval_every, trial.early_stop)
        if self.spec.seconds_per_trial:  # time in proportion to the steps trained
            time.sleep(self.duration(trial) * max(run.step - run.start_step, 1) / run.budget_steps)
        if outcome is not None:
            return outcome
        if trial.checkpoint_dir is not None:
            run.save(trial.checkpoint_dir)
        ppl = run.val_curve[-1][1]
        return TrialResult.complete(self._objectives(ppl, c), metrics=run.metrics())

    # -----------------------------------------------------------------------------------
    def _objectives(self, ppl: float, c: Mapping[str, Any]) -> dict[str, float]:
        seq = int(c["max_seq_length"])
        batch = int(c["per_device_train_batch_size"]) * int(c["gradient_accumulation_steps"])
        measured = {
            "val_perplexity": ppl,
            "peak_memory_mb": 300.0
            + 0.004 * batch * seq * (1 + 0.5 * (_module_set(c["target_modules"]) == "all-linear"))
            + 0.5 * c["r"],
            "trainable_parameters": float(
                c["r"] * 2 * 576 * 30 * (7 if _module_set(c["target_modules"]) == "all-linear" else 4)
            ),
            "train_tokens_per_s": 400.0 * (1 + math.log2(batch)) / (1 + c["r"] / 256),
        }
        return {name: measured[name] for name in self.spec.objectives}


@dataclass
class _Run:
    """One trial's training: a level that approaches the config's asymptote step by step."""

    config: Mapping[str, Any]
    base: float
    budget_steps: int
    target: int
    data_seed: int
    step: int = 0
    start_step: int = 0
    level: float = UNTRAINED_LEVEL
    loss_curve: list = field(default_factory=list)
    val_curve: list = field(default_factory=list)
    pruned_at: int | None = None

    @classmethod
    def start(cls, trial: Trial, c: Mapping[str, Any], base: float) -> _Run:
        budget_steps = _steps(trial.budget, c)
        run = cls(c, base, budget_steps, max(1, round(trial.fidelity * budget_steps)), trial.seed)
        if trial.resume_from is not None:
            run._load(Path(trial.resume_from), c)
        return run

    def train(self, noise: float, eval_every: float, early_stop: EarlyStop | None) -> TrialResult | None:
        """Step to the target; a failed or pruned result when the run stops early, else None."""
        c = self.config
        batch = int(c["per_device_train_batch_size"]) * int(c["gradient_accumulation_steps"])
        scale = c["lora_alpha"] / (math.sqrt(c["r"]) if c["use_rslora"] else c["r"])
        overshoot = math.log10(float(c["learning_rate"]) * scale) - (-3.2 + 0.5 * math.log10(batch / 8))
        asymptote = _asymptote(c, overshoot)
        rate = min(0.9, BASE_RATE * 10 ** (0.5 * min(overshoot, 1.0)) * math.sqrt(batch / 8))
        limit = 1.3 if float(c["max_grad_norm"]) <= 1.0 else 1.0
        diverge_at = self.step + max(1, int(self.budget_steps * 0.2)) if overshoot > limit else None
        marks = {max(1, round(self.budget_steps * eval_every * k)) for k in range(1, int(1 / eval_every) + 1)}
        while self.step < self.target:
            self.step += 1
            if diverge_at is not None and self.step >= diverge_at:
                message = f"loss is nan at step {self.step} (learning rate too high)"
                if early_stop is not None and early_stop.loss_ratio is not None:
                    return self._pruned(message, FailureReason.DIVERGED)
                return TrialResult.failed(FailureReason.DIVERGED, message, metrics=self.metrics())
            self.level = asymptote + (self.level - asymptote) * math.exp(-rate)
            wobble = np.random.default_rng([self.data_seed, self.step, 1]).normal(0.0, 0.02)
            self.loss_curve.append([self.step, math.log(self.base) + self.level + float(wobble)])
            if self.step in marks or self.step == self.target:
                z = np.random.default_rng([self.data_seed, self.step]).normal(0.0, noise)
                value = self.base * math.exp(self.level + z)
                self.val_curve.append([self.step, value])
                if (
                    self.step < self.target
                    and early_stop is not None
                    and early_stop.prunes(self.step / self.budget_steps, value)
                ):
                    threshold = early_stop.threshold_at(self.step / self.budget_steps)
                    return self._pruned(
                        f"val_perplexity {value:.4g} worse than the early-stopping threshold {threshold:.4g} "
                        f"at step {self.step}/{self.budget_steps}"
                    )
        return None

    def _pruned(self, message: str, reason: FailureReason | None = None) -> TrialResult:
        self.pruned_at = self.step
        values = {"val_perplexity": self.val_curve[-1][1]} if self.val_curve else {}
        return TrialResult.pruned(values, message, reason=reason, metrics=self.metrics())

    def metrics(self) -> dict[str, Any]:
        c = self.config
        per_step = (
            int(c["per_device_train_batch_size"]) * int(c["gradient_accumulation_steps"]) * int(c["max_seq_length"])
        )
        out = {
            "train_loss_curve": self.loss_curve,
            "val_perplexity_curve": self.val_curve,
            "steps": self.step,
            "budget_steps": self.budget_steps,
            "start_step": self.start_step,
            "train_tokens": (self.step - self.start_step) * per_step,
        }
        if self.pruned_at is not None:
            out["pruned_at_step"] = self.pruned_at
        return out

    # -- checkpoints ------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "step": self.step,
            "level": self.level,
            "data_seed": self.data_seed,
            "loss_curve": self.loss_curve,
            "val_curve": self.val_curve,
            "structure": {k: self.config.get(k) for k in sorted(STRUCTURAL_GENES)},
        }
        (directory / CHECKPOINT_FILE).write_text(json.dumps(state))

    def _load(self, directory: Path, c: Mapping[str, Any]) -> None:
        state = read_checkpoint(directory / CHECKPOINT_FILE, c)
        self.step = self.start_step = state["step"]
        self.level, self.data_seed = state["level"], state["data_seed"]
        self.loss_curve, self.val_curve = state["loss_curve"], state["val_curve"]


CHECKPOINT_FILE = "synthetic_checkpoint.json"


def _check_genes(config: Mapping[str, Any]) -> None:
    """Refuse what the QLoRA fitness would refuse, rather than answer for a config it cannot train.
    The learning rate is left out: a bad one diverges (see ``evaluate``)."""
    for name, value in config.items():
        if name in GENES and name != "learning_rate":
            problem = why_refused(GENES[name], value)
            if problem is not None:
                raise ValueError(f"gene {name}={value!r}: {problem}")


def _asymptote(c: Mapping[str, Any], overshoot: float) -> float:
    """Log-perplexity above the floor that this config converges to: a too-small step mostly
    trains slowly (see the rate), a too-large one converges to a worse point."""
    return (
        (0.25 if overshoot > 0 else 0.05) * overshoot**2
        + 0.3 * (float(c["lora_dropout"]) - 0.05) ** 2
        + 0.02 * abs(math.log2(c["r"] / 16))
        + _MODULE_GAIN.get(_module_set(c["target_modules"]), 0.01)
        + _SCHEDULER_GAIN.get(c["lr_scheduler_type"], 0.0)
        + 0.2 * (float(c["warmup_ratio"]) - 0.05) ** 2
        + 0.05 * float(c["weight_decay"]) ** 2
    )


def _steps(budget: Budget, c: Mapping[str, Any]) -> int:
    if budget.tokens:
        per_step = (
            int(c["per_device_train_batch_size"]) * int(c["gradient_accumulation_steps"]) * int(c["max_seq_length"])
        )
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


def read_checkpoint(path: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON checkpoint's state, refused (RuntimeError) when unreadable or when the config
    changes a gene its ``structure`` fixed (a continued trial cannot change its rank)."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot resume from {path.parent}: {exc}") from None
    for key, value in state["structure"].items():
        if config.get(key) != value:
            raise RuntimeError(
                f"cannot resume from {path.parent}: {key} is {config.get(key)!r}, the checkpoint has {value!r}"
            )
    return state
