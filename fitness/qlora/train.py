"""One trial on a resident 4-bit base: attach a fresh LoRA adapter, train, score, detach.

A lean loop instead of ``transformers.Trainer`` (it costs seconds per trial to set
up); it mirrors TrainingArguments semantics for the genes it reads: the loss is
averaged over gradient-accumulation micro-batches, gradients are clipped to
``max_grad_norm`` before the step, warmup is ``ceil(warmup_ratio * steps)``, and
``constant`` ignores warmup.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fitness.qlora.genes import Optim, TrialConfig
from fitness.qlora.tokens import Blocks, TokenizedCorpus
from evo.trial import Budget


class DivergedError(RuntimeError):
    """The loss (or the validation loss) became NaN or inf."""

    def __init__(self, step: int, value: float, what: str = "training loss") -> None:
        super().__init__(f"{what} is {value} at step {step}")
        self.step = step


@dataclass(frozen=True)
class EvalSettings:
    seq_length: int  # block length of the validation set
    max_tokens: int  # validation set size cap
    batch_size: int
    every: int  # optimizer steps between intermediate evaluations; 0 = end only


def steps_for(budget: Budget, cfg: TrialConfig) -> int:
    """Optimizer steps a genome gets: a tokens budget wins over a steps budget; at least 1."""
    if budget.tokens is not None:
        return max(1, budget.tokens // cfg.tokens_per_step)
    if budget.steps is not None:
        return max(1, budget.steps)
    raise ValueError("the budget sets neither steps nor tokens")


def train_and_score(
    base, data: TokenizedCorpus, cfg: TrialConfig, *, steps: int, seed: int,
    evaluation: EvalSettings, artifact_dir: Path | None,
) -> dict[str, Any]:
    """Train an adapter for ``steps`` optimizer steps and return metrics incl. ``val_perplexity``.

    The base is restored (adapter unloaded) even when training fails.
    """
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)  # LoRA init and dropout
    lora = LoraConfig(
        r=cfg.r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules(), use_rslora=cfg.use_rslora,
        bias="none", task_type="CAUSAL_LM",
    )
    if cfg.gradient_checkpointing:  # non-reentrant: works although the frozen embeddings need no grad
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        model = get_peft_model(base, lora)
        try:
            return _train(model, data, cfg, steps=steps, seed=seed, evaluation=evaluation, artifact_dir=artifact_dir)
        finally:
            model.unload()  # swaps the original Linear4bit modules back in, dropping the adapter
    finally:
        if cfg.gradient_checkpointing:
            base.gradient_checkpointing_disable()
        base.eval()


def _train(model, data, cfg, *, steps, seed, evaluation, artifact_dir) -> dict[str, Any]:
    from transformers import get_scheduler

    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer(cfg, params)
    warmup = math.ceil(cfg.warmup_ratio * steps)
    scheduler = get_scheduler(cfg.lr_scheduler_type.value, optimizer, num_warmup_steps=warmup, num_training_steps=steps)
    val_blocks = data.validation_blocks(evaluation.seq_length, evaluation.max_tokens)
    batches = _batches(data.train_blocks(cfg.max_seq_length), cfg.per_device_train_batch_size, seed)

    start = time.perf_counter()
    eval_seconds = 0.0
    loss_curve: list[list[float]] = []
    eval_curve: list[list[float | None]] = []
    model.train()
    for step in range(1, steps + 1):
        step_loss = 0.0
        for _ in range(cfg.gradient_accumulation_steps):
            ids, labels = (t.to(device) for t in next(batches))
            loss = model(input_ids=ids, labels=labels).loss
            if not torch.isfinite(loss):
                raise DivergedError(step, loss.item())
            (loss / cfg.gradient_accumulation_steps).backward()
            step_loss += loss.item() / cfg.gradient_accumulation_steps
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_curve.append([step, step_loss])
        if evaluation.every and step % evaluation.every == 0 and step < steps:
            tick = time.perf_counter()
            eval_curve.append([step, _finite_or_none(_perplexity(model, val_blocks, evaluation.batch_size))])
            eval_seconds += time.perf_counter() - tick
    train_seconds = time.perf_counter() - start - eval_seconds

    tick = time.perf_counter()
    val_ppl = _perplexity(model, val_blocks, evaluation.batch_size)
    final_eval_seconds = time.perf_counter() - tick
    if not math.isfinite(val_ppl):
        raise DivergedError(steps, val_ppl, what="validation perplexity")
    eval_curve.append([steps, val_ppl])
    train_tokens = steps * cfg.tokens_per_step
    metrics: dict[str, Any] = {
        "val_perplexity": val_ppl,
        "train_loss_curve": loss_curve,
        "val_perplexity_curve": eval_curve,
        "steps": steps,
        "train_tokens": train_tokens,
        "train_tokens_per_s": train_tokens / max(train_seconds, 1e-9),
        "eval_tokens": int(val_blocks.ids.numel()),
        "eval_tokens_per_s": val_blocks.ids.numel() / max(final_eval_seconds, 1e-9),
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds + final_eval_seconds,
        "trainable_parameters": sum(p.numel() for p in params),
    }
    if artifact_dir is not None:
        adapter = Path(artifact_dir) / "adapter"
        model.save_pretrained(adapter)
        metrics["adapter_path"] = str(adapter)
    return metrics


def _optimizer(cfg: TrialConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Build the optimizer TrainingArguments' ``optim`` names, with its default hyperparameters."""
    # Optimizers refuse a NaN or negative lr in their constructor; build with a placeholder and
    # set the real rate afterwards, so a NaN gene runs and fails as DIVERGED like any bad rate.
    placeholder = 1e-3
    if cfg.optim is Optim.ADAMW_TORCH:
        optimizer = torch.optim.AdamW(params, lr=placeholder, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay)
    elif cfg.optim is Optim.ADAFACTOR:
        from transformers.optimization import Adafactor

        optimizer = Adafactor(
            params, lr=placeholder, scale_parameter=False, relative_step=False, warmup_init=False,
            weight_decay=cfg.weight_decay,
        )
    else:
        import bitsandbytes as bnb

        kind = bnb.optim.AdamW8bit if cfg.optim is Optim.ADAMW_BNB_8BIT else bnb.optim.PagedAdamW8bit
        optimizer = kind(params, lr=placeholder, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay)
    for group in optimizer.param_groups:
        group["lr"] = cfg.learning_rate
    return optimizer


def _batches(blocks: Blocks, batch_size: int, seed: int):
    """Endless shuffled batches (a new permutation each epoch), reproducible from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(blocks), generator=generator)
        for i in range(0, len(order), batch_size):
            index = order[i : i + batch_size]
            if len(index) < batch_size and len(blocks) >= batch_size:
                break  # keep every batch full: the same tokens per step all trial long
            yield blocks.ids[index], blocks.labels[index]


@torch.no_grad()
def _perplexity(model, blocks: Blocks, batch_size: int) -> float:
    """exp of the token-weighted mean NLL over every labelled, predicted token."""
    model.eval()
    device = next(model.parameters()).device
    total_nll, total_tokens = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        ids, labels = blocks.ids[i : i + batch_size].to(device), blocks.labels[i : i + batch_size].to(device)
        n = int((labels[:, 1:] != -100).sum())
        if n:
            total_nll += model(input_ids=ids, labels=labels).loss.float().item() * n
            total_tokens += n
    model.train()
    mean = total_nll / max(total_tokens, 1)
    return math.exp(mean) if mean < 700 else math.inf


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
