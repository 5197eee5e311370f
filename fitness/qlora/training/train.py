"""Training a cohort of trials on the resident 4-bit base: one forward and backward per micro-step.

A lean loop instead of ``transformers.Trainer`` (it costs seconds per trial to set up).
Each micro-step stacks one micro-batch of every training member; the decoder runs once
over all rows (see ``cohort.py``), then each member's loss is taken on its own rows
through the head and back-propagated on its own (so only one member's logits are alive
at a time), and the decoder's backward runs once. Members take their optimizer steps when their own accumulation is complete,
are scored together when due, and leave the cohort when they end; waiting trials take
their place. A trial alone is a cohort of one: the same code path.

A trial trains from step 0, or from a checkpoint's step, up to ``fidelity`` of the
budget; the schedule always spans the whole budget, so stopping and continuing is
the same as training in one go.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from evo.trial import Budget, Trial
from fitness.qlora.data.tokens import TokenizedCorpus
from fitness.qlora.genes import TrialConfig
from fitness.qlora.memory.planner import next_split
from fitness.qlora.memory.sizing import CohortLimit
from fitness.qlora.training.adapter import linear_modules
from fitness.qlora.training.cohort import Cohort, causal_lm_loss, hidden_states
from fitness.qlora.training.evaluate import perplexities
from fitness.qlora.training.member import CohortMember, DivergedError, Event, TrainingJob, TrainingOutcome
from fitness.qlora.training.settings import EvalSettings

__all__ = [
    "DivergedError",
    "TrainingJob",
    "TrainingOutcome",
    "is_out_of_memory",
    "cohort_shape",
    "steps_for",
    "train_and_score",
    "train_cohort",
]

Answer = Callable[[TrainingJob, "TrainingOutcome | BaseException"], None]


def steps_for(budget: Budget, cfg: TrialConfig) -> int:
    """Optimizer steps a genome gets: a tokens budget wins over a steps budget; at least 1."""
    if budget.tokens is not None:
        return max(1, budget.tokens // cfg.tokens_per_step)
    if budget.steps is not None:
        return max(1, budget.steps)
    raise ValueError("the budget sets neither steps nor tokens")


def cohort_shape(cfg: TrialConfig) -> tuple[Any, ...]:
    """What trials must share to train in one cohort: the base and the block shape."""
    return cfg.quant, cfg.max_seq_length, cfg.gradient_checkpointing


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA OOM, Python's MemoryError, or the CPU allocator's refusal (a plain RuntimeError)."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def train_and_score(
    base, data: TokenizedCorpus, cfg: TrialConfig, *, trial: Trial, budget_steps: int, evaluation: EvalSettings
) -> TrainingOutcome:
    """One trial alone (a cohort of one): its TrainingOutcome, or the exception that failed it raised."""
    answers: list[TrainingOutcome | BaseException] = []
    limit = CohortLimit(1, 1, learning=False)
    train_cohort(
        base,
        data,
        [TrainingJob(trial, cfg, budget_steps)],
        evaluation=evaluation,
        limit=limit,
        answer=lambda _, a: answers.append(a),
    )
    if isinstance(answers[0], BaseException):
        raise answers[0]
    return answers[0]


def train_cohort(
    base,
    data: TokenizedCorpus,
    jobs: list[TrainingJob],
    *,
    evaluation: EvalSettings,
    limit: CohortLimit,
    answer: Answer,
    base_model: str | None = None,
    capacity: int | None = None,
) -> None:
    """Train and score every job (all of one :func:`cohort_shape`), ``limit.size`` at a time, at most
    ``capacity`` (what the memory plan lets train beside the base).

    Each trial is answered exactly once, as soon as it ends: with its TrainingOutcome, or with the
    exception that failed it (the job answered may be a copy with a larger ``split``). A failure of
    the shared step (out of memory, or any error) restarts the trials in it in two halves, from
    their start (the same seeds, so the same numbers); a trial alone out of memory restarts with
    its micro-batch cut (:func:`smaller_micro_batch`), and fails when it is at one row; a trial
    that fails alone otherwise fails. The base is restored even when this raises.
    """
    cohort = Cohort(base)
    linear = linear_modules(base)
    val_blocks = data.validation_blocks(evaluation.seq_length, evaluation.max_tokens)
    checkpointing = jobs[0].cfg.gradient_checkpointing
    if checkpointing:  # non-reentrant: works although the frozen embeddings need no grad
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    queue, active, cap = deque(jobs), [], min(len(jobs), capacity or len(jobs))
    limit.mark_base()
    base.train()
    try:
        while queue or active:
            while queue and len(active) < min(limit.size, cap):
                job = queue.popleft()
                try:
                    member = CohortMember.start(job, base, linear, data, cohort.device)
                except Exception as exc:  # this trial's own fault (a bad checkpoint, genes): it alone fails
                    answer(job, exc)
                    continue
                member.every, member.eval_tokens = evaluation.every, int(val_blocks.ids.numel())
                cohort.wrap(member.adapter.targets)
                active.append(member)
            if not active:
                continue
            try:
                ended = _iterate(cohort, active, val_blocks, evaluation, limit, base_model)
            except Exception as exc:
                failed, active = active, []
                cohort.layout([], training=True)  # drop the masks and groups holding the members
                if len(failed) == 1:
                    smaller = smaller_micro_batch(failed[0].job, exc)
                    if smaller is None:
                        answer(failed[0].job, exc)
                    else:
                        queue.appendleft(smaller)
                        _release(base)
                    continue
                if is_out_of_memory(exc):
                    limit.out_of_memory(len(failed))
                cap = len(failed) // 2
                queue.extendleft(reversed([m.job for m in failed]))
                _release(base)
                continue
            for member in ended:
                active.remove(member)
                assert member.result is not None
                answer(member.job, member.result)
    finally:
        cohort.unwrap()
        if checkpointing:
            base.gradient_checkpointing_disable()
        base.eval()


def smaller_micro_batch(job: TrainingJob, exc: BaseException) -> TrainingJob | None:
    """After a real out-of-memory error of ``job`` alone: the job with its batches cut into more
    micro-batches (the same effective batch); None for another error or at one row already."""
    micro = job.cfg.per_device_train_batch_size
    split = next_split(micro, job.split)
    if split is None or not is_out_of_memory(exc):
        return None
    reason = f"out of memory at micro-batch {micro // job.split}: {exc}".splitlines()[0][:300]
    return replace(job, split=split, split_reason=reason)


def _iterate(
    cohort: Cohort, active: list[CohortMember], val_blocks, evaluation: EvalSettings, limit, base_model
) -> list[CohortMember]:
    """One micro-step of every active member, then the evaluations it made due; the members that ended."""
    events = {m: Event.FINAL for m in active if m.step >= m.target}  # continued at its target: only scored
    training = [m for m in active if m not in events]
    if training:
        tick = time.perf_counter()
        tokens, losses = _micro_step(cohort, training)
        seconds = time.perf_counter() - tick
        limit.observe(len(training), tokens, seconds)
        for member, loss in zip(training, losses):
            member.train_seconds += seconds
            member.cohort_size = max(member.cohort_size, len(training))
            event = member.micro_done(loss)
            if event is not None:
                events[member] = event
    scoring = [m for m, event in events.items() if event is not Event.ENDED]
    if scoring:
        tick = time.perf_counter()
        scores = perplexities(cohort, [m.adapter for m in scoring], val_blocks, evaluation.batch_size)
        seconds = time.perf_counter() - tick
        for member, ppl in zip(scoring, scores):
            if events[member] is Event.FINAL:
                try:
                    member.finish(ppl, seconds, base_model)
                except Exception as exc:  # writing its checkpoint or adapter: this trial's failure
                    member.result = exc
            elif not member.scored(ppl, seconds):
                del events[member]
    return [m for m in events if m.result is not None]


def _micro_step(cohort: Cohort, members: list[CohortMember]) -> tuple[int, list[float]]:
    """Forward and backward one micro-batch of each member: the tokens, and each member's loss."""
    batches = [m.next_batch(cohort.device) for m in members]
    cohort.layout([(m.adapter, len(ids)) for m, (ids, _) in zip(members, batches)], training=True)
    ids = torch.cat([ids for ids, _ in batches])
    hidden = hidden_states(cohort.base, ids)
    head_input = hidden.detach().requires_grad_()
    start, losses = 0, []
    for member, (rows, labels) in zip(members, batches):
        loss = causal_lm_loss(cohort.base, head_input[start : start + len(rows)], labels)
        # a non-finite loss back-propagates NaN into its own rows and adapter only (rows never
        # mix); the member then ends without a step. No sync here: one for all, below.
        member.share(loss).backward()
        losses.append(loss.detach())
        start += len(rows)
    hidden.backward(head_input.grad)
    return int(ids.numel()), torch.stack(losses).tolist()


def _release(base) -> None:
    """Hand memory a failed cohort held back before its halves start."""
    import gc

    gc.collect()
    if next(base.parameters()).is_cuda:
        torch.cuda.empty_cache()
