"""The worker's side of a trial: resident base + tokenized data in, TrialResult out.

``TrialRunner.run`` never raises: every failure becomes a FAILED result whose reason
says what happened (OOM, DIVERGED, EXCEPTION; a bad checkpoint is an EXCEPTION), and
a trial early stopping ended is PRUNED. Deaths and timeouts are the supervisor's to
report (see ``worker.py``), since a dead process can't answer.
"""

from __future__ import annotations

import math
import time
import traceback
from typing import Any

import torch

from evo.trial import FailureReason, Trial, TrialResult
from fitness.qlora.corpus import load_corpus
from fitness.qlora.evaluate import EvalSettings
from fitness.qlora.genes import QuantSettings, parse_genes
from fitness.qlora.memory import address_space_cap, peak_rss_mb, reset_peak_rss
from fitness.qlora.model import ResidentBase, compute_dtype, load_tokenizer, pick_device
from fitness.qlora.source import default_cache_root, resolve_model
from fitness.qlora.spec import QLoRASpec
from fitness.qlora.tokens import tokenize_corpus
from fitness.qlora.train import DivergedError, steps_for, train_and_score


class TrialRunner:
    """Loads the tokenizer, data and the default base once; runs trials one after another."""

    def __init__(self, spec: QLoRASpec) -> None:
        self.spec = spec
        cache_root = default_cache_root(spec)
        source = resolve_model(spec)
        self.device = pick_device(spec.device)
        tokenizer = load_tokenizer(source, cache_root)
        self.data = tokenize_corpus(load_corpus(spec.data, spec.validation_fraction), tokenizer, cache_root)
        self.base = ResidentBase(source, self.device, cache_root)
        self.base.get(QuantSettings())  # the common case is ready before the first trial's clock starts
        self.evaluation = EvalSettings(
            spec.eval_seq_length, spec.validation_tokens, spec.eval_batch_size, spec.eval_every
        )

    def run(self, trial: Trial) -> TrialResult:
        start = time.perf_counter()
        metrics: dict[str, Any] = {"device": self.device}
        applied: dict[str, Any] | None = None
        try:
            cfg, ignored, gene_lr = parse_genes(
                trial.config, lr_scaling=self.spec.lr_scaling, lr_reference_batch=self.spec.lr_reference_batch
            )
            applied = cfg.as_dict()
            metrics.update(
                ignored_config_keys=ignored,
                learning_rate_gene=gene_lr,
                learning_rate_applied=cfg.learning_rate,
                compute_dtype=str(compute_dtype(cfg.quant.bnb_4bit_compute_dtype, self.device)).removeprefix("torch."),
            )
            applied["bnb_4bit_compute_dtype"] = metrics["compute_dtype"]  # what BitsAndBytesConfig takes, not "auto"
            self._reset_peak_memory()
            base = self.base.get(cfg.quant)
            metrics["base_loads"] = self.base.loads
            with address_space_cap(self.spec.trial_memory_limit_mb if self.device == "cpu" else None):
                outcome = train_and_score(
                    base,
                    self.data,
                    cfg,
                    trial=trial,
                    budget_steps=steps_for(trial.budget, cfg),
                    evaluation=self.evaluation,
                )
            metrics.update(outcome.metrics)
        except DivergedError as exc:
            return self._failed(FailureReason.DIVERGED, str(exc), metrics, applied, start, diverged_step=exc.step)
        except Exception as exc:  # a trial failure must never end the worker loop
            reason = FailureReason.OOM if is_out_of_memory(exc) else FailureReason.EXCEPTION
            message = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            metrics["traceback"] = traceback.format_exc(limit=8)
            return self._failed(reason, message, metrics, applied, start)
        finally:
            if self.device == "cuda":
                torch.cuda.empty_cache()
        metrics.update(self._memory_metrics(), wall_seconds=time.perf_counter() - start)
        value = metrics.pop("val_perplexity", None)
        if outcome.stopped is not None:
            values = {"val_perplexity": value} if value is not None and math.isfinite(value) else {}
            return TrialResult.pruned(
                values, outcome.stopped, reason=outcome.reason, metrics=metrics, applied_config=applied
            )
        values = {"val_perplexity": value, **{name: metrics[name] for name in self.spec.objectives[1:]}}
        return TrialResult.complete(values, metrics=metrics, applied_config=applied)

    def _failed(self, reason, message, metrics, applied, start, **extra) -> TrialResult:
        metrics.update(self._memory_metrics(), wall_seconds=time.perf_counter() - start, **extra)
        return TrialResult.failed(reason, message, metrics=metrics, applied_config=applied)

    def _reset_peak_memory(self) -> None:
        reset_peak_rss()
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def _memory_metrics(self) -> dict[str, float]:
        """Peaks of this trial; ``peak_memory_mb`` is the one that limits it on its device."""
        out = {"peak_rss_mb": peak_rss_mb()}
        if self.device == "cuda":
            out["peak_cuda_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["peak_memory_mb"] = out.get("peak_cuda_allocated_mb", out["peak_rss_mb"])
        return out


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA OOM, Python's MemoryError, or the CPU allocator's refusal (a plain RuntimeError)."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)
