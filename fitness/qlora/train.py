"""One trial on a resident 4-bit base: attach a fresh LoRA adapter, train, score, detach.

A lean loop instead of ``transformers.Trainer`` (it costs seconds per trial to set
up); it mirrors TrainingArguments semantics for the genes it reads: the loss is
averaged over gradient-accumulation micro-batches, gradients are clipped to
``max_grad_norm`` before the step, and the schedule is in ``optim.py``.

A trial trains from step 0, or from a checkpoint's step, up to ``fidelity`` of the
budget; the schedule always spans the whole budget, so stopping and continuing is
the same as training in one go.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from evo.trial import Budget, FailureReason, Trial
from fitness.qlora import checkpoint
from fitness.qlora.evaluate import EvalSettings, perplexity
from fitness.qlora.genes import TrialConfig
from fitness.qlora.optim import apply_hyperparameters, build_optimizer, build_schedule
from fitness.qlora.tokens import Blocks, TokenizedCorpus, shuffled_batches


class DivergedError(RuntimeError):
    """The loss (or the validation loss) became NaN or inf."""

    def __init__(self, step: int, value: float, what: str = "training loss") -> None:
        super().__init__(f"{what} is {value} at step {step}")
        self.step = step


@dataclass(frozen=True)
class Outcome:
    """A trial's metrics; ``stopped`` is the message when early stopping ended it (then
    ``reason`` is DIVERGED for a diverging loss, None for the median rule)."""

    metrics: dict[str, Any]
    stopped: str | None = None
    reason: FailureReason | None = None


@dataclass
class _Progress:
    """The step counter, curves and clocks of a trial; they continue a checkpoint's."""

    step: int  # optimizer steps taken so far
    losses: list[list[float | None]]
    evals: list[list[float | None]]
    first_loss: float | None
    start_step: int = field(init=False)
    started: float = 0.0
    eval_seconds: float = 0.0
    last_eval_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.start_step = self.step

    def score(self, model, blocks: Blocks, batch_size: int) -> float:
        tick = time.perf_counter()
        ppl = perplexity(model, blocks, batch_size)
        self.last_eval_seconds = time.perf_counter() - tick
        self.eval_seconds += self.last_eval_seconds
        return ppl


def steps_for(budget: Budget, cfg: TrialConfig) -> int:
    """Optimizer steps a genome gets: a tokens budget wins over a steps budget; at least 1."""
    if budget.tokens is not None:
        return max(1, budget.tokens // cfg.tokens_per_step)
    if budget.steps is not None:
        return max(1, budget.steps)
    raise ValueError("the budget sets neither steps nor tokens")


def train_and_score(
    base, data: TokenizedCorpus, cfg: TrialConfig, *, trial: Trial, budget_steps: int, evaluation: EvalSettings
) -> Outcome:
    """Train ``trial``'s adapter up to its fidelity and score it (``val_perplexity`` in the metrics).

    The base is restored (adapter unloaded) even when training fails.
    """
    from peft import LoraConfig, get_peft_model

    if not 0.0 < trial.fidelity <= 1.0:
        raise ValueError(f"fidelity={trial.fidelity!r}: must be in (0, 1]")
    resume = None
    if trial.resume_from is not None:
        resume = checkpoint.load(trial.resume_from)  # before attaching: a bad checkpoint fails fast
        resume.check_structure(cfg)
    torch.manual_seed(trial.seed)  # LoRA init and dropout (a resumed trial restores the RNG)
    lora = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules(),
        use_rslora=cfg.use_rslora,
        bias="none",
        task_type="CAUSAL_LM",
    )
    if cfg.gradient_checkpointing:  # non-reentrant: works although the frozen embeddings need no grad
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        model = get_peft_model(base, lora)
        try:
            return _train(model, data, cfg, trial, budget_steps, evaluation, resume)
        finally:
            model.unload()  # swaps the original Linear4bit modules back in, dropping the adapter
    finally:
        if cfg.gradient_checkpointing:
            base.gradient_checkpointing_disable()
        base.eval()


def _train(model, data, cfg, trial, budget_steps, evaluation, resume) -> Outcome:
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(cfg, params)
    position = checkpoint.DataPosition(trial.seed, 0, cfg.per_device_train_batch_size, cfg.max_seq_length)
    progress = _Progress(0, [], [], None)
    if resume is not None:
        resume.restore(model, optimizer)
        apply_hyperparameters(optimizer, cfg)  # load_state_dict brought back the source trial's
        position = resume.data.continued(cfg, resume.step)
        progress = _Progress(*resume.progress_for(budget_steps), resume.first_loss)
    scheduler, schedule = build_schedule(cfg, optimizer, budget_steps=budget_steps, start_step=progress.step)
    target = max(1, round(trial.fidelity * budget_steps))
    val_blocks = data.validation_blocks(evaluation.seq_length, evaluation.max_tokens)
    blocks = data.train_blocks(cfg.max_seq_length)
    batches = shuffled_batches(blocks, cfg.per_device_train_batch_size, position.seed, skip=position.consumed)
    early = trial.early_stop
    metrics = partial(_metrics, progress, cfg, trial, budget_steps, val_blocks, params)

    progress.started = time.perf_counter()
    model.train()
    while progress.step < target:
        step = progress.step + 1
        loss = _accumulate(model, batches, cfg, device)
        progress.first_loss = loss if progress.first_loss is None else progress.first_loss
        if early is not None and early.diverged(progress.first_loss, loss):
            progress.losses.append([step, _finite_or_none(loss)])
            message = (
                f"training loss {loss:.4g} at step {step}/{budget_steps} diverged "
                f"(non-finite or above {early.loss_ratio:g} x the first loss {progress.first_loss:.4g})"
            )
            return Outcome(metrics(pruned_at_step=step, diverged_step=step), message, FailureReason.DIVERGED)
        if not math.isfinite(loss):
            raise DivergedError(step, loss)
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        progress.step = step
        progress.losses.append([step, loss])
        if evaluation.every and step % evaluation.every == 0 and step < target:
            ppl = progress.score(model, val_blocks, evaluation.batch_size)
            progress.evals.append([step, _finite_or_none(ppl)])
            if early is not None and early.prunes(step / budget_steps, ppl):
                median = early.threshold_at(step / budget_steps)
                message = f"val_perplexity {ppl:.4g} worse than the median {median:.4g} at step {step}/{budget_steps}"
                return Outcome(metrics(val_perplexity=ppl, pruned_at_step=step), message)

    val_ppl = progress.score(model, val_blocks, evaluation.batch_size)
    if not math.isfinite(val_ppl):
        raise DivergedError(progress.step, val_ppl, what="validation perplexity")
    if progress.evals and progress.evals[-1][0] == progress.step:
        progress.evals[-1] = [progress.step, val_ppl]  # resumed at its target: scored again, not a new point
    else:
        progress.evals.append([progress.step, val_ppl])
    out = metrics(val_perplexity=val_ppl)
    if trial.checkpoint_dir is not None:
        consumed = position.consumed + (progress.step - progress.start_step) * cfg.gradient_accumulation_steps
        checkpoint.save(
            trial.checkpoint_dir,
            model=model,
            optimizer=optimizer,
            cfg=cfg,
            step=progress.step,
            budget_steps=budget_steps,
            data=replace(position, consumed=consumed),
            schedule=schedule,
            train_loss_curve=progress.losses,
            val_perplexity_curve=progress.evals,
        )
        out["checkpoint_path"] = str(trial.checkpoint_dir)
    if trial.artifact_dir is not None:
        adapter = Path(trial.artifact_dir) / "adapter"
        model.save_pretrained(adapter)
        out["adapter_path"] = str(adapter)
    return Outcome(out)


def _accumulate(model, batches, cfg: TrialConfig, device) -> float:
    """Forward and backward one optimizer step's micro-batches: their mean loss, or the first non-finite one."""
    n = cfg.gradient_accumulation_steps
    step_loss = 0.0
    for _ in range(n):
        ids, labels = (t.to(device) for t in next(batches))
        loss = model(input_ids=ids, labels=labels).loss
        if not torch.isfinite(loss):
            return loss.item()
        (loss / n).backward()
        step_loss += loss.item() / n
    return step_loss


def _metrics(progress: _Progress, cfg, trial, budget_steps, val_blocks, params, **extra) -> dict[str, Any]:
    train_seconds = time.perf_counter() - progress.started - progress.eval_seconds
    train_tokens = (progress.step - progress.start_step) * cfg.tokens_per_step  # this trial's only
    eval_tokens = int(val_blocks.ids.numel())
    return {
        **extra,
        "train_loss_curve": progress.losses,
        "val_perplexity_curve": progress.evals,
        "steps": progress.step,
        "start_step": progress.start_step,
        "budget_steps": budget_steps,
        "fidelity": trial.fidelity,
        "train_tokens": train_tokens,
        "train_tokens_per_s": train_tokens / max(train_seconds, 1e-9),
        "eval_tokens": eval_tokens,
        "eval_tokens_per_s": eval_tokens / max(progress.last_eval_seconds, 1e-9) if progress.last_eval_seconds else 0.0,
        "train_seconds": train_seconds,
        "eval_seconds": progress.eval_seconds,
        "trainable_parameters": sum(p.numel() for p in params),
    }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
