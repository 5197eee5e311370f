"""The fidelity benchmark's tasks: a fitness, its search space and fixed values, the token budget
of one trial and the rungs the multi-fidelity methods use.

- ``synthetic``: fitness/synthetic.py's learning-curve model, 65,536 training tokens a trial.
- ``smollm2``: QLoRA on SmolLM2-135M-Instruct (4-bit, CPU) with the pydoc corpus, 6,144
  training tokens a trial and 1,024 validation tokens.
- ``smollm2-surrogate``: the surrogate of the collected real trials, with the data's search
  space, fixed values and budget; its curves have points at 1/4, 1/2, 3/4 and 1 of the
  budget, hence its rungs.
- ``smollm2-direct``: the real trials that ``smollm2-surrogate`` models (the data file's
  fitness, space, fixed values and budget; no mid-trial evaluations), to confirm its ranking.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from evo.trial import Budget
from evobench.tasks.qlora_data import load_data

SURROGATE = "smollm2-surrogate"
DIRECT = "smollm2-direct"


@dataclass(frozen=True)
class Task:
    fitness: dict[str, Any]
    budget: Budget
    space: dict[str, Any]
    fixed: dict[str, Any]
    population: int  # of the GAs
    trials: int = 8  # a run's training tokens by default, in whole-budget trials
    es_fitness: dict[str, Any] = field(default_factory=dict)  # what early stopping needs on top (evaluations)
    # ga-mf and optuna-tpe-hb: the same rungs, each eta times the one before
    rungs: tuple[float, ...] = (1 / 9, 1 / 3, 1.0)
    eta: int = 3
    mf_offspring: int = 9  # ga-mf's children per generation
    evolution: dict[str, Any] = field(default_factory=dict)  # --set: under every method of ours
    # The epoch-by-epoch peers (Syne Tune, NePS): a trial reports at 1/points, 2/points, ... of its
    # budget, where the fitness validates (synthetic: every 1/8; the surrogates: their curves' points)
    points: int = 8

    @property
    def hyperband_resources(self) -> int:
        """Optuna's max_resource: rungs in units of the first one (min_resource=1)."""
        return round(1 / self.rungs[0])


SYNTHETIC_SPACE = {
    "learning_rate": {"type": "log_float", "low": 1e-5, "high": 1e-2},
    "per_device_train_batch_size": {"type": "int", "choices": [1, 2, 4, 8, 16]},
    "r": {"type": "int", "choices": [4, 8, 16, 32, 64]},
    "lora_alpha": {"type": "int", "low": 8, "high": 128, "step": 8},
    "lora_dropout": {"type": "float", "low": 0.0, "high": 0.3, "step": 0.05},
    "target_modules": {"type": "categorical", "choices": ["attention", "mlp", "all-linear"]},
    "lr_scheduler_type": {"type": "categorical", "choices": ["constant", "linear", "cosine"]},
    "warmup_ratio": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.01},
    "max_grad_norm": {"type": "categorical", "choices": [0.3, 1.0, 10.0], "ordered": True},
}
SMOLLM2_SPACE = {
    "learning_rate": {"type": "log_float", "low": 1e-4, "high": 1e-2},
    "r": {"type": "int", "choices": [8, 16, 32, 64]},
    "lora_alpha": {"type": "int", "choices": [8, 16, 32, 64, 128]},
    "lora_dropout": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.05},
    "target_modules": {"type": "categorical", "choices": ["attention", "all-linear"]},
    "lr_scheduler_type": {"type": "categorical", "choices": ["constant", "linear", "cosine"]},
    "warmup_ratio": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.05},
    "per_device_train_batch_size": {"type": "int", "choices": [4, 8]},
}
TASKS = {
    "synthetic": Task(
        fitness={"type": "synthetic", "noise": 0.02, "eval_every": 0.125},
        budget=Budget(tokens=65536),
        space=SYNTHETIC_SPACE,
        fixed={"max_seq_length": 128, "optim": "adamw_torch"},
        population=8,
        trials=40,
    ),
    "smollm2": Task(
        fitness={
            "type": "qlora",
            "model": "smollm2-135m",
            "data": "pydoc",
            "validation_tokens": 1024,
            "eval_seq_length": 256,
            "trial_timeout": 300,
        },
        budget=Budget(tokens=6144),
        space=SMOLLM2_SPACE,
        fixed={
            "max_seq_length": 128,
            "optim": "adamw_torch",
            "gradient_accumulation_steps": 1,
            "max_grad_norm": 1.0,
            "weight_decay": 0.0,
            "bnb_4bit_compute_dtype": "auto",
        },
        population=4,
        es_fitness={"eval_every": 3},
    ),
}


def surrogate_task(data_file: Path | str) -> Task:
    """The data's own search space, fixed values and budget; rungs where its curves have points."""
    header = load_data(data_file).header
    return Task(
        fitness={"type": "qlora-surrogate"},  # built from the data file, not by make_fitness
        budget=Budget(tokens=header["budget"]["tokens"]),
        space=header["search_space"],
        fixed=header["fixed"],
        population=8,
        trials=60,
        rungs=(1 / 4, 1 / 2, 1.0),
        eta=2,
        mf_offspring=8,
        points=_points(header),
    )


def _points(header: dict[str, Any]) -> int:
    """Validations of a whole trial of the data's largest step count (its smallest batch): a
    validation every ``eval_every`` steps, or at the quarters where the data has none."""
    every = int(header.get("eval_every") or 0)
    space, fixed = header["search_space"], header["fixed"]
    batches = space.get("per_device_train_batch_size", {}).get("choices") or [
        fixed.get("per_device_train_batch_size", 1)
    ]
    lengths = space.get("max_seq_length", {}).get("choices") or [fixed.get("max_seq_length", 128)]
    steps = header["budget"]["tokens"] // (min(batches) * min(lengths))
    return max(1, steps // every) if every else 4


def direct_task(data_file: Path | str) -> Task:
    """The surrogate's real trials: the data's own fitness, without its mid-trial evaluations."""
    header = load_data(data_file).header
    return replace(surrogate_task(data_file), fitness={**header["fitness"], "eval_every": 0}, trials=20)


def task(name: str, data_file: Path | str) -> Task:
    """The task called ``name``; the surrogate's and the direct one are read from ``data_file``."""
    if name == SURROGATE:
        return surrogate_task(data_file)
    if name == DIRECT:
        return direct_task(data_file)
    return TASKS[name]
