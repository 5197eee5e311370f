"""The worker's side of trials: resident base + tokenized data in, one TrialResult per trial out.

``TrialRunner.run_cohort`` never raises: every failure becomes a FAILED result whose reason
says what happened (OOM, DIVERGED, EXCEPTION; a bad checkpoint is an EXCEPTION), and a
trial early stopping ended is PRUNED. Trials that share the base and the block shape
(``train.cohort_shape``) train in one cohort, sized to the device's memory first
(``memory/cohort_memory.py``); each is answered as soon as it ends. Deaths and timeouts are the
supervisor's to report (see ``supervisor.py``), since a dead process can't answer.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from evo.trial import FailureReason, Trial, TrialResult
from fitness.qlora.base.model import ResidentBase, compute_dtype, device_kind, load_tokenizer, pick_device
from fitness.qlora.base.source import default_cache_root, resolve_model
from fitness.qlora.data.corpus import corpus_for
from fitness.qlora.data.tokens import tokenize_corpus
from fitness.qlora.genes import QuantSettings, TrialConfig, parse_genes
from fitness.qlora.memory.cohort_memory import CohortMemory
from fitness.qlora.memory.planner import DoesNotFit
from fitness.qlora.memory.process import address_space_cap, peak_rss_mb, reset_peak_rss
from fitness.qlora.memory.sizing import CohortSizer, cohort_plan
from fitness.qlora.training.train import (
    DivergedError,
    TrainingJob,
    TrainingOutcome,
    cohort_shape,
    is_out_of_memory,
    steps_for,
    train_cohort,
)
from fitness.qlora.worker.settings import WorkerSettings

Send = Callable[[int, TrialResult], None]


class TrialRunner:
    """Loads the tokenizer, data and the default base once; runs cohorts of trials one after another."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        model, evaluation = settings.model, settings.evaluation
        cache_root = default_cache_root(model)
        source = resolve_model(model)
        self.device = pick_device(model.device)
        tokenizer = load_tokenizer(source, cache_root)
        self.data = tokenize_corpus(corpus_for(settings.data, cache_root), tokenizer, cache_root)
        self.base = ResidentBase(source, self.device, cache_root)
        self.base.get(QuantSettings())  # the common case is ready before the first trial's clock starts
        self.evaluation = evaluation
        self.sizer = CohortSizer(cohort_plan(settings.memory, self.device), device=self.device)
        blocks = len(self.data.validation_blocks(evaluation.seq_length, evaluation.max_tokens))
        self.memory = CohortMemory.for_worker(
            settings.memory, source, cache_root, blocks=blocks, device=self.device, kind=device_kind(model.device)
        )

    def run(self, trial: Trial) -> TrialResult:
        results: list[TrialResult] = []
        self.run_cohort([trial], lambda _, result: results.append(result))
        return results[0]

    def run_cohort(self, trials: list[Trial], send: Send) -> None:
        """Train ``trials``, in cohorts of those that can share a forward; ``send(index, result)`` once for each."""
        start = time.perf_counter()
        self._reset_peak_memory()
        shapes: dict[Any, list[tuple[int, TrainingJob, dict[str, Any], dict[str, Any] | None]]] = {}
        for index, trial in enumerate(trials):
            metrics: dict[str, Any] = {"device": self.device, "cohort_trials": len(trials)}
            applied: dict[str, Any] | None = None
            try:
                cfg, applied = self._parse(trial, metrics)
                job = TrainingJob(trial, cfg, steps_for(trial.budget, cfg))
            except Exception as exc:  # a gene it cannot use: this trial alone fails
                send(index, self._result(exc, metrics, applied, start))
                continue
            shapes.setdefault(cohort_shape(cfg), []).append((index, job, metrics, applied))
        loaded = self.base.quant
        for shape in sorted(shapes, key=lambda s: s[0] != loaded):  # the resident base's trials first
            self._run_shape(shape, shapes[shape], send, start)

    def _run_shape(self, shape, members, send: Send, start: float) -> None:
        # by trial: the job answered may be a copy split to fit (train.smaller_micro_batch)
        by_trial = {id(job.trial): (index, metrics, applied) for index, job, metrics, applied in members}
        unanswered = set(by_trial)
        trained: list[tuple[TrainingJob, TrainingOutcome]] = []

        def answer(job: TrainingJob, outcome: TrainingOutcome | BaseException) -> None:
            index, metrics, applied = by_trial[id(job.trial)]
            unanswered.discard(id(job.trial))
            if isinstance(outcome, TrainingOutcome):
                trained.append((job, outcome))
            if job.split > 1:  # the same effective batch, in smaller micro-batches
                cfg = job.cfg
                applied = {
                    **(applied or {}),
                    "per_device_train_batch_size": cfg.per_device_train_batch_size // job.split,
                    "gradient_accumulation_steps": cfg.gradient_accumulation_steps * job.split,
                }
                metrics = {**metrics, "memory_split": job.split, "memory_split_reason": job.split_reason}
            send(index, self._result(outcome, metrics, applied, start))

        jobs = [job for _, job, _, _ in members]
        limit_mb = self.settings.memory.trial_memory_limit_mb
        try:
            base = self.base.get(jobs[0].cfg.quant)
            for _, _, metrics, _ in members:
                metrics["base_loads"] = self.base.loads
            capacity = None
            if self.memory is not None:
                jobs, capacity = self._sized(self.memory, members, answer)
                self.memory.start()  # peaks from here: this cohort's
            if jobs:
                with address_space_cap(limit_mb * len(jobs) if limit_mb and self.device == "cpu" else None):
                    train_cohort(
                        base,
                        self.data,
                        jobs,
                        evaluation=self.evaluation,
                        limit=self.sizer.limit(shape),
                        answer=answer,
                        base_model=getattr(base, "name_or_path", None),
                        capacity=capacity,
                    )
                if self.memory is not None:
                    planned = [(job.cfg, job.split) for job in jobs]
                    self.memory.record(planned, [((job.cfg, job.split), out.metrics) for job, out in trained])
        except Exception as exc:  # outside any trial (loading the base): every trial still waiting fails
            for job in jobs:
                if id(job.trial) in unanswered:
                    answer(job, exc)
        finally:
            if self.device == "cuda":
                torch.cuda.empty_cache()

    @staticmethod
    def _sized(memory: CohortMemory, members, answer: Callable) -> tuple[list[TrainingJob], int]:
        """The jobs that train, each at the micro-batch that fits the device now (a copy when it is split),
        and how many at once; a job that fits at no micro-batch is answered before any training (an OOM
        that costs nothing)."""
        sized = memory.size([job.cfg for _, job, _, _ in members])
        going = []
        for (_, job, metrics, _), fit in zip(members, sized.fits):
            metrics["memory_estimate_mb"] = round(fit.footprint.total, 1)  # the base included
            if fit.room_mb is not None:
                metrics["memory_room_mb"] = round(fit.room_mb, 1)  # what the trials may add to it
            if not fit.fits:
                answer(job, DoesNotFit(f"does not fit even at micro-batch 1: {fit.why()}"))
            elif fit.split > 1:
                going.append(replace(job, split=fit.split, split_reason=f"planned: {fit.why()}"))
            else:
                going.append(job)
        return going, sized.capacity

    def _parse(self, trial: Trial, metrics: dict[str, Any]) -> tuple[TrialConfig, dict[str, Any]]:
        cfg, ignored, gene_lr = parse_genes(
            trial.config, lr_scaling=self.settings.lr_scaling, lr_reference_batch=self.settings.lr_reference_batch
        )
        applied = cfg.as_dict()
        metrics.update(
            ignored_config_keys=ignored,
            learning_rate_gene=gene_lr,
            learning_rate_applied=cfg.learning_rate,
            compute_dtype=str(compute_dtype(cfg.quant.bnb_4bit_compute_dtype, self.device)).removeprefix("torch."),
        )
        applied["bnb_4bit_compute_dtype"] = metrics["compute_dtype"]  # what BitsAndBytesConfig takes, not "auto"
        return cfg, applied

    def _result(self, outcome, metrics: dict[str, Any], applied, start: float) -> TrialResult:
        metrics = {**metrics, **self._memory_metrics(), "wall_seconds": time.perf_counter() - start}
        if isinstance(outcome, DivergedError):
            metrics["diverged_step"] = outcome.step
            return TrialResult.failed(FailureReason.DIVERGED, str(outcome), metrics=metrics, applied_config=applied)
        if isinstance(outcome, BaseException):
            reason = FailureReason.OOM if is_out_of_memory(outcome) else FailureReason.EXCEPTION
            message = f"{type(outcome).__name__}: {outcome}".splitlines()[0][:500]
            metrics["traceback"] = "".join(traceback.format_exception(outcome, limit=8))
            return TrialResult.failed(reason, message, metrics=metrics, applied_config=applied)
        metrics.update(outcome.metrics)
        value = metrics.pop("val_perplexity", None)
        if outcome.stopped is not None:
            values = {"val_perplexity": value} if value is not None and math.isfinite(value) else {}
            return TrialResult.pruned(
                values, outcome.stopped, reason=outcome.reason, metrics=metrics, applied_config=applied
            )
        values = {"val_perplexity": value, **{name: metrics[name] for name in self.settings.objectives[1:]}}
        return TrialResult.complete(values, metrics=metrics, applied_config=applied)

    def _reset_peak_memory(self) -> None:
        reset_peak_rss()
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def _memory_metrics(self) -> dict[str, float]:
        """Peaks since the cohort started; ``peak_memory_mb`` is the one that limits it on its device."""
        out = {"peak_rss_mb": peak_rss_mb()}
        if self.device == "cuda":
            out["peak_cuda_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["peak_memory_mb"] = out.get("peak_cuda_allocated_mb", out["peak_rss_mb"])
        return out
