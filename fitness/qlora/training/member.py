"""One trial inside a cohort: its adapter, optimizer, schedule, data stream and progress.

Everything a member does depends on its own trial only (seed, config, checkpoint), never
on which trials share its cohort: its adapter is initialised from its seed, its
dropout reseeded per micro-batch from its data position, its optimizer is its own.
The bookkeeping mirrors TrainingArguments: the loss is averaged over accumulation
micro-batches, gradients are clipped to ``max_grad_norm`` before the step.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from evo.trial import FailureReason, Trial
from fitness.qlora.data.tokens import IGNORE_INDEX, TokenizedCorpus, shuffled_batches
from fitness.qlora.genes import TrialConfig
from fitness.qlora.training import checkpoint
from fitness.qlora.training.adapter import Adapter, resolve_targets
from fitness.qlora.training.optim import apply_hyperparameters, build_optimizer, build_schedule


class DivergedError(RuntimeError):
    """The loss (or the validation loss) became NaN or inf."""

    def __init__(self, step: int, value: float, what: str = "training loss") -> None:
        super().__init__(f"{what} is {value} at step {step}")
        self.step = step


@dataclass(frozen=True)
class TrainingJob:
    """A trial to train, with its parsed genes and its step budget.

    ``split`` > 1 trains each batch of the genes in that many micro-batches (``split`` times the
    accumulation: the same effective batch and data), because the whole one would not fit in
    memory; ``split_reason`` says why (``memory/planner.py``, or a real out-of-memory error)."""

    trial: Trial
    cfg: TrialConfig
    budget_steps: int
    split: int = 1
    split_reason: str | None = None


@dataclass(frozen=True)
class TrainingOutcome:
    """A trial's metrics; ``stopped`` is the message when early stopping ended it (then
    ``reason`` is DIVERGED for a diverging loss, None for the median rule)."""

    metrics: dict[str, Any]
    stopped: str | None = None
    reason: FailureReason | None = None


class Event(enum.Enum):
    """What a member needs after an optimizer step."""

    SCORE = "score"  # an intermediate evaluation
    FINAL = "final"  # reached its target: final evaluation, checkpoint, adapter
    ENDED = "ended"  # diverged or stopped: ``result`` holds its outcome or error


@dataclass(eq=False)  # compared and hashed by identity: the loop keys events by member
class CohortMember:
    """A trial training in a cohort (a member of the cohort, not of the search's population)."""

    job: TrainingJob
    adapter: Adapter
    optimizer: torch.optim.Optimizer
    scheduler: Any
    schedule: dict[str, Any]
    position: checkpoint.DataPosition
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    step: int
    losses: list[list[float | None]]
    evals: list[list[float | None]]
    first_loss: float | None
    start_step: int = field(init=False)
    target: int = field(init=False)
    drawn: int = 0  # micro-batches drawn since ``position``
    micro: int = 0  # micro-batches into the current optimizer step
    step_loss: float = 0.0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    last_eval_seconds: float = 0.0
    cohort_size: int = 1  # most trials trained at once, this one included
    split: int = 1  # micro-batches each batch of the genes is cut into (the job's, at most the batch's rows)
    weight: float = 1.0  # the current micro-batch's share of its batch's labelled tokens
    every: int = 0  # optimizer steps between intermediate evaluations; 0 = only at the end
    eval_tokens: int = 0  # tokens of the validation set
    result: TrainingOutcome | BaseException | None = None
    judged: frozenset[int] = field(init=False)  # steps early stopping judges the trial at: validated there too

    def __post_init__(self) -> None:
        self.start_step = self.step
        self.target = max(1, round(self.job.trial.fidelity * self.job.budget_steps))
        early, budget = self.job.trial.early_stop, self.job.budget_steps
        # the first step at or past each threshold's fraction, where it comes into force
        steps = {math.ceil(fraction * budget - 1e-9) for fraction, _ in (early.thresholds if early else ())}
        self.judged = frozenset(s for s in steps if self.start_step < s < self.target)

    @property
    def cfg(self) -> TrialConfig:
        return self.job.cfg

    @property
    def accumulation(self) -> int:
        """Micro-batches per optimizer step: the gene's, times the memory split."""
        return self.cfg.gradient_accumulation_steps * self.split

    def share(self, loss):
        """A micro-batch's part of its step's loss (a tensor or a float): the mean over the gene's
        accumulation, each piece of a split batch weighted by its labelled tokens, so that the
        pieces add up to the whole batch's mean loss."""
        if self.split > 1:
            loss = loss * self.weight
        return loss / self.cfg.gradient_accumulation_steps

    @classmethod
    def start(
        cls, job: TrainingJob, base, linear: list[str], data: TokenizedCorpus, device: torch.device
    ) -> CohortMember:
        """A fresh adapter, or the checkpoint's, ready to train; raises for this trial's own faults."""
        trial, cfg = job.trial, job.cfg
        if not 0.0 < trial.fidelity <= 1.0:
            raise ValueError(f"fidelity={trial.fidelity!r}: must be in (0, 1]")
        resume = None
        if trial.resume_from is not None:
            resume = checkpoint.load(trial.resume_from)  # before building anything: a bad one fails fast
            resume.check_structure(cfg)
        adapter = Adapter(base, resolve_targets(cfg.lora_target_modules(), linear), cfg, seed=trial.seed, device=device)
        optimizer = build_optimizer(cfg, adapter.parameters())
        position = checkpoint.DataPosition(trial.seed, 0, cfg.per_device_train_batch_size, cfg.max_seq_length)
        step, losses, evals, first_loss = 0, [], [], None
        if resume is not None:
            resume.restore(adapter, optimizer)
            apply_hyperparameters(optimizer, cfg)  # load_state_dict brought back the source trial's
            position = resume.data.continued(cfg, resume.step)
            (step, losses, evals), first_loss = resume.progress_for(job.budget_steps), resume.first_loss
        scheduler, schedule = build_schedule(cfg, optimizer, budget_steps=job.budget_steps, start_step=step)
        blocks = data.train_blocks(cfg.max_seq_length)
        # the stream (and the checkpoint's position in it) is in the genes' batches, split or not
        batches = shuffled_batches(blocks, cfg.per_device_train_batch_size, position.seed, skip=position.consumed)
        member = cls(job, adapter, optimizer, scheduler, schedule, position, batches, step, losses, evals, first_loss)
        member.split = min(job.split, cfg.per_device_train_batch_size, len(blocks))  # no piece is empty
        if member.split > 1:
            member.batches = _pieces(batches, member.split)
        return member

    def next_batch(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The next micro-batch; dropout is reseeded from the stream position, so resuming redraws the same."""
        index = self.position.consumed * self.split + self.drawn
        self.adapter.reseed_dropout((self.position.seed * 6364136223846793005 + index * 1442695040888963407) % 2**63)
        self.drawn += 1
        if self.split > 1:
            ids, labels, self.weight = next(self.batches)
        else:
            ids, labels = next(self.batches)
        return ids.to(device), labels.to(device)

    def micro_done(self, loss: float) -> Event | None:
        """Account one micro-batch's loss; at the end of a step (or a non-finite loss) take the step."""
        if not math.isfinite(loss):
            self.step_loss, self.micro = loss, 0
            return self._end_step()
        self.step_loss += self.share(loss)
        self.micro += 1
        if self.micro < self.accumulation:
            return None
        self.micro = 0
        return self._end_step()

    def _end_step(self) -> Event | None:
        step, loss, early = self.step + 1, self.step_loss, self.job.trial.early_stop
        self.step_loss = 0.0
        self.first_loss = loss if self.first_loss is None else self.first_loss
        if early is not None and early.diverged(self.first_loss, loss):
            self.losses.append([step, _finite_or_none(loss)])
            message = (
                f"training loss {loss:.4g} at step {step}/{self.job.budget_steps} diverged "
                f"(non-finite or above {early.loss_ratio:g} x the first loss {self.first_loss:.4g})"
            )
            self.result = TrainingOutcome(
                self.metrics(pruned_at_step=step, diverged_step=step), message, FailureReason.DIVERGED
            )
            return Event.ENDED
        if not math.isfinite(loss):
            self.result = DivergedError(step, loss)
            return Event.ENDED
        params = self.adapter.parameters()
        if self.cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step = step
        self.losses.append([step, loss])
        if step >= self.target:
            return Event.FINAL
        due = (self.every and step % self.every == 0) or step in self.judged
        return Event.SCORE if due else None

    def scored(self, ppl: float, seconds: float) -> bool:
        """Record an evaluation of ``seconds``; True when early stopping ends the trial here."""
        self.last_eval_seconds = seconds
        self.eval_seconds += seconds
        self.evals.append([self.step, _finite_or_none(ppl)])
        early, fraction = self.job.trial.early_stop, self.step / self.job.budget_steps
        if early is None or not early.prunes(fraction, ppl):
            return False
        message = (
            f"val_perplexity {ppl:.4g} worse than the early-stopping threshold {early.threshold_at(fraction):.4g} "
            f"at step {self.step}/{self.job.budget_steps}"
        )
        self.result = TrainingOutcome(self.metrics(val_perplexity=ppl, pruned_at_step=self.step), message)
        return True

    def finish(self, ppl: float, seconds: float, base_model: str | None) -> None:
        """The final score; then the checkpoint and the adapter when the trial asks for them."""
        self.last_eval_seconds = seconds
        self.eval_seconds += seconds
        if not math.isfinite(ppl):
            self.result = DivergedError(self.step, ppl, what="validation perplexity")
            return
        if self.evals and self.evals[-1][0] == self.step:
            self.evals[-1] = [self.step, ppl]  # resumed at its target: scored again, not a new point
        else:
            self.evals.append([self.step, ppl])
        trial, out = self.job.trial, self.metrics(val_perplexity=ppl)
        if trial.checkpoint_dir is not None:
            consumed = self.position.consumed + (self.step - self.start_step) * self.cfg.gradient_accumulation_steps
            checkpoint.save(
                trial.checkpoint_dir,
                adapter=self.adapter,
                optimizer=self.optimizer,
                cfg=self.cfg,
                step=self.step,
                budget_steps=self.job.budget_steps,
                data=replace(self.position, consumed=consumed),
                schedule=self.schedule,
                train_loss_curve=self.losses,
                val_perplexity_curve=self.evals,
            )
            out["checkpoint_path"] = str(trial.checkpoint_dir)
        if trial.artifact_dir is not None:
            path = trial.artifact_dir / "adapter"
            self.adapter.save_pretrained(path, base_model)
            out["adapter_path"] = str(path)
        self.result = TrainingOutcome(out)

    def metrics(self, **extra: Any) -> dict[str, Any]:
        train_tokens = (self.step - self.start_step) * self.cfg.tokens_per_step  # this trial's only
        return {
            **extra,
            "train_loss_curve": self.losses,
            "val_perplexity_curve": self.evals,
            "steps": self.step,
            "start_step": self.start_step,
            "budget_steps": self.job.budget_steps,
            "fidelity": self.job.trial.fidelity,
            "train_tokens": train_tokens,
            "train_tokens_per_s": train_tokens / max(self.train_seconds, 1e-9),
            "eval_seconds": self.eval_seconds,
            "train_seconds": self.train_seconds,
            "eval_tokens": self.eval_tokens,
            "eval_tokens_per_s": self.eval_tokens / self.last_eval_seconds if self.last_eval_seconds else 0.0,
            "trainable_parameters": sum(p.numel() for p in self.adapter.parameters()),
            "cohort_size": self.cohort_size,
        }


def _pieces(batches: Iterator[tuple[torch.Tensor, torch.Tensor]], split: int):
    """Each batch as ``split`` micro-batches of rows (as equal as the rows allow), each with its
    share of the batch's labelled tokens (a chat batch's pieces differ; plain text: ``1 / split``)."""
    for ids, labels in batches:
        counts = (labels[:, 1:] != IGNORE_INDEX).sum(dim=1)
        total = int(counts.sum())
        for rows, piece, n in zip(ids.tensor_split(split), labels.tensor_split(split), counts.tensor_split(split)):
            yield rows, piece, int(n.sum()) / total


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
