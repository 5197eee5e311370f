"""A cohort's memory in the worker: sized to its device before it trains, measured after.

Before a cohort trains, each trial is fitted to the room on the device (``memory_plan.py``):
``fitness.memory_limit_mb`` when set (on any device), else on CUDA the free memory with the
base resident; a CPU without a limit has none, and nothing is refused or split there. A
trial past the room trains its batches in pieces; one past it even at micro-batch 1 is
refused (an OOM that costs no training); the estimates bound how many train at once.

After the cohort, its measured peak over the resident base (CUDA: the allocator's peak; CPU:
the peak RSS over the RSS before it, freed heap handed back first) is recorded in the
calibration with its speeds, so later estimates of that composition are corrected, when the
peak belongs to it: every trial trained in it at once, none hit a real out-of-memory error,
and it is not the worker's first cohort (that one pays one-time allocations: kernels, thread
pools, arenas).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from evo.trial import ConfigError
from fitness.qlora.base.architecture import read_architecture
from fitness.qlora.base.model import compute_dtype, device_kind
from fitness.qlora.base.source import ModelSource
from fitness.qlora.data.tokens import TokenizedCorpus
from fitness.qlora.spec import QLoRASpec
from fitness.qlora.training.calibration import Calibration
from fitness.qlora.training.evaluate import trim_heap
from fitness.qlora.training.footprint import EvalShape, TrialShape
from fitness.qlora.training.member import TrainingJob, TrainingOutcome
from fitness.qlora.training.memory_plan import DoesNotFit, Fit, MemoryPlanner, Room
from fitness.qlora.worker.memory import peak_rss_mb, reset_peak_rss, rss_mb

log = logging.getLogger(__name__)

MB = 2**20


@dataclass(frozen=True)
class Sized:
    """A cohort after the plan: the jobs that train (some split), each job's fit, and how many at once."""

    jobs: list[TrainingJob]
    refused: list[tuple[TrainingJob, DoesNotFit]]
    fits: dict[int, Fit]  # by id(job.trial)
    capacity: int


class CohortMemory:
    """The plan of one worker's cohorts, on ``device`` ("cpu" or "cuda")."""

    def __init__(self, planner: MemoryPlanner, *, device: str, limit_mb: float | None) -> None:
        self.planner = planner
        self.device = device
        self.limit_mb = limit_mb
        self._before_mb = 0.0
        self._warm = False

    @classmethod
    def for_worker(
        cls, spec: QLoRASpec, source: ModelSource, cache_root: Path, data: TokenizedCorpus, device: str
    ) -> CohortMemory | None:
        """None when the model's shape cannot be read (then trials run unplanned, as before)."""
        try:
            architecture = read_architecture(source, cache_root)
        except ConfigError:
            architecture = None
        if architecture is None or architecture.shape is None:
            log.warning("no shape for %s: trials are not sized to memory before they start", source.name_or_path)
            return None
        blocks = len(data.validation_blocks(spec.eval_seq_length, spec.validation_tokens))
        evaluation = EvalShape(max(1, min(spec.eval_batch_size, blocks)), spec.eval_seq_length)
        calibration = Calibration.load(cache_root, source.identity, device_kind(spec.device))
        planner = MemoryPlanner(architecture.shape, evaluation, calibration)
        return cls(planner, device=device, limit_mb=spec.memory_limit_mb)

    def room(self) -> Room | None:
        """What the cohort may use now: the limit, the free CUDA memory, or nothing known (a CPU)."""
        if self.limit_mb is not None:
            return Room.limit(self.limit_mb)
        if self.device == "cuda":
            free, _ = torch.cuda.mem_get_info()
            cached = torch.cuda.memory_reserved() - torch.cuda.memory_allocated()  # torch holds it, free to reuse
            return Room.free_cuda((free + cached) / MB)
        return None

    def size(self, jobs: Sequence[TrainingJob]) -> Sized:
        """Each job at the micro-batch that fits the room; those that fit nowhere refused."""
        room = self.room()
        going: list[TrainingJob] = []
        refused: list[tuple[TrainingJob, DoesNotFit]] = []
        fits: dict[int, Fit] = {}
        for job in jobs:
            fit = fits[id(job.trial)] = self.planner.fit(job.cfg, self.itemsize(job), room)
            if not fit.fits:
                refused.append((job, DoesNotFit(f"does not fit even at micro-batch 1: {fit.why()}")))
            elif fit.split > 1:
                going.append(replace(job, split=fit.split, split_reason=f"planned: {fit.why()}"))
            else:
                going.append(job)
        capacity = self.planner.capacity([self.shape(job) for job in going], room)
        return Sized(going, refused, fits, capacity)

    def start(self) -> None:
        """Mark the memory before the cohort: its peak is measured from here."""
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self._before_mb = torch.cuda.memory_allocated() / MB
        else:  # freed heap back first; no gc.collect (most of a second): the supervisor runs one between calls
            trim_heap()
            reset_peak_rss()
            self._before_mb = rss_mb()

    def record(self, planned: Sequence[TrainingJob], answered: Sequence[tuple[TrainingJob, TrainingOutcome]]) -> None:
        """After the cohort of ``planned`` jobs: keep its peak when it is the composition's (see the module doc)."""
        peak = torch.cuda.max_memory_allocated() / MB if self.device == "cuda" else peak_rss_mb()
        warm, self._warm = self._warm, True
        splits = {id(job.trial): job.split for job in planned}
        metrics = [outcome.metrics for _, outcome in answered]
        if (
            not warm
            or not planned
            or len(answered) != len(planned)
            or any(splits.get(id(job.trial)) != job.split for job, _ in answered)  # a real OOM split it
            or any(m.get("cohort_size") != len(planned) or not m.get("train_seconds") for m in metrics)
        ):
            return
        train_seconds = max(m["train_seconds"] for m in metrics)
        self.planner.record(
            [self.shape(job) for job, _ in answered],
            peak - self._before_mb,
            train_tokens_per_s=sum(m["train_tokens"] for m in metrics) / train_seconds,
            eval_tokens_per_s=sum(m.get("eval_tokens_per_s", 0.0) for m in metrics) or None,
        )

    def itemsize(self, job: TrainingJob) -> int:
        """Bytes per element of the job's compute dtype on this device."""
        return compute_dtype(job.cfg.quant.bnb_4bit_compute_dtype, self.device).itemsize

    def shape(self, job: TrainingJob) -> TrialShape:
        return self.planner.shape(job.cfg, self.itemsize(job), job.split)
