"""The optimizer and learning-rate schedule that TrainingArguments' genes name.

Both are built from this trial's genes even when it continues a checkpoint: the
checkpoint brings the optimizer's moments and the schedule's position, the trial
brings the rates (population-based training changes them on purpose).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from fitness.qlora.genes import Optim, Schedule, TrialConfig


def build_optimizer(cfg: TrialConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer ``cfg.optim`` names, with its TrainingArguments default hyperparameters."""
    # Optimizers refuse a NaN or negative lr in their constructor; build with a placeholder and
    # set the real rate afterwards, so a NaN gene runs and fails as DIVERGED like any bad rate.
    placeholder = 1e-3
    if cfg.optim is Optim.ADAMW_TORCH:
        # fused: one vectorised pass per step; on CPU ~5x faster than the per-tensor loop (same
        # update up to float rounding), and a cohort cannot share this per-trial cost
        optimizer = torch.optim.AdamW(
            params, lr=placeholder, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay, fused=True
        )
    elif cfg.optim is Optim.ADAFACTOR:
        from transformers.optimization import Adafactor

        optimizer = Adafactor(
            params,
            lr=placeholder,
            scale_parameter=False,
            relative_step=False,
            warmup_init=False,
            weight_decay=cfg.weight_decay,
        )
    else:
        import bitsandbytes as bnb

        kind = bnb.optim.AdamW8bit if cfg.optim is Optim.ADAMW_BNB_8BIT else bnb.optim.PagedAdamW8bit
        optimizer = kind(params, lr=placeholder, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay)
    apply_hyperparameters(optimizer, cfg)
    return optimizer


def apply_hyperparameters(optimizer: torch.optim.Optimizer, cfg: TrialConfig) -> None:
    """Set this trial's rates on every param group, e.g. over those ``load_state_dict`` restored."""
    for group in optimizer.param_groups:
        group["lr"] = cfg.learning_rate
        group["initial_lr"] = cfg.learning_rate  # the schedule's base rate when it resumes mid-way
        group["weight_decay"] = cfg.weight_decay


def build_schedule(
    cfg: TrialConfig, optimizer: torch.optim.Optimizer, *, budget_steps: int, start_step: int
) -> tuple[torch.optim.lr_scheduler.LRScheduler, dict[str, Any]]:
    """The schedule over the whole budget, positioned after ``start_step`` optimizer steps.

    Warmup is ``ceil(warmup_ratio * budget_steps)``; ``constant`` ignores it. Returns the
    scheduler and what defines it (recorded in checkpoints).
    """
    from transformers.optimization import (
        get_constant_schedule,
        get_constant_schedule_with_warmup,
        get_cosine_schedule_with_warmup,
        get_linear_schedule_with_warmup,
    )

    warmup = math.ceil(cfg.warmup_ratio * budget_steps)
    last = start_step - 1  # LRScheduler's convention; its constructor then steps to start_step
    kind = cfg.lr_scheduler_type
    if kind is Schedule.CONSTANT:
        scheduler = get_constant_schedule(optimizer, last_epoch=last)
    elif kind is Schedule.CONSTANT_WITH_WARMUP:
        scheduler = get_constant_schedule_with_warmup(optimizer, warmup, last_epoch=last)
    else:
        make = get_linear_schedule_with_warmup if kind is Schedule.LINEAR else get_cosine_schedule_with_warmup
        scheduler = make(optimizer, warmup, budget_steps, last_epoch=last)
    schedule = {
        "type": kind.value,
        "learning_rate": cfg.learning_rate,
        "warmup_steps": warmup,
        "budget_steps": budget_steps,
    }
    return scheduler, schedule
