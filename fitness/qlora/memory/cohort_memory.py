"""A cohort's memory in the worker: sized to its device before it trains, measured after.

Before a cohort trains, each trial is fitted to the room on the device (``planner.py``):
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from evo.trial import ConfigError
from fitness.qlora.base.architecture import read_architecture
from fitness.qlora.base.model import compute_dtype
from fitness.qlora.base.source import ModelSource
from fitness.qlora.genes import TrialConfig
from fitness.qlora.memory.calibration import Calibration, composition
from fitness.qlora.memory.footprint import MB, TrialShape
from fitness.qlora.memory.planner import Fit, MemoryPlanner, Room
from fitness.qlora.memory.process import peak_rss_mb, reset_peak_rss, rss_mb, trim_heap
from fitness.qlora.memory.settings import MemorySettings

log = logging.getLogger(__name__)


Planned = tuple[TrialConfig, int]  # a trial's genes, and the pieces each of its batches is cut into


@dataclass(frozen=True)
class Sized:
    """A cohort after the plan: each trial's fit (in the order given), and how many of those that fit train at once."""

    fits: list[Fit]
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
        cls, settings: MemorySettings, source: ModelSource, cache_root: Path, *, blocks: int, device: str, kind: str
    ) -> CohortMemory | None:
        """The plan on ``device`` ("cpu" or "cuda"), corrected by the peaks measured on this ``kind`` of
        device (``base.model.device_kind``); ``blocks``: the validation set's. None when the model's
        shape cannot be read (then trials run unplanned, as before)."""
        try:
            architecture = read_architecture(source, cache_root)
        except ConfigError:
            architecture = None
        if architecture is None or architecture.shape is None:
            log.warning("no shape for %s: trials are not sized to memory before they start", source.name_or_path)
            return None
        # a validation set of fewer blocks than a batch is scored in one smaller batch
        evaluation = replace(settings.evaluation, batch_size=max(1, min(settings.evaluation.batch_size, blocks)))
        calibration = Calibration.load(cache_root, source.identity, kind)
        planner = MemoryPlanner(architecture.shape, evaluation, calibration)
        return cls(planner, device=device, limit_mb=settings.memory_limit_mb)

    def room(self) -> Room | None:
        """What the cohort may use now: the limit, the free CUDA memory, or nothing known (a CPU)."""
        if self.limit_mb is not None:
            return Room.limit(self.limit_mb)
        if self.device == "cuda":
            free, _ = torch.cuda.mem_get_info()
            cached = torch.cuda.memory_reserved() - torch.cuda.memory_allocated()  # torch holds it, free to reuse
            return Room.free_cuda((free + cached) / MB)
        return None

    def size(self, cfgs: Sequence[TrialConfig]) -> Sized:
        """Each trial at the micro-batch that fits the room now (``fits`` False: at none)."""
        room = self.room()
        fits = [self.planner.fit(cfg, self.itemsize(cfg), room) for cfg in cfgs]
        going = [self.shape(cfg, fit.split) for cfg, fit in zip(cfgs, fits) if fit.fits]
        return Sized(fits, self.planner.capacity(going, room))

    def start(self) -> None:
        """Mark the memory before the cohort: its peak is measured from here."""
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self._before_mb = torch.cuda.memory_allocated() / MB
        else:  # freed heap back first; no gc.collect (most of a second): the supervisor runs one between calls
            trim_heap()
            reset_peak_rss()
            self._before_mb = rss_mb()

    def record(self, planned: Sequence[Planned], trained: Sequence[tuple[Planned, Mapping[str, Any]]]) -> None:
        """After the cohort of ``planned`` trials: keep its peak when it is the composition's (see the
        module doc). ``trained``: the trials that ended with metrics, each at the split it trained at."""
        peak = torch.cuda.max_memory_allocated() / MB if self.device == "cuda" else peak_rss_mb()
        warm, self._warm = self._warm, True
        shapes = [self.shape(cfg, split) for cfg, split in planned]
        metrics = [m for _, m in trained]
        if (
            not warm
            or not planned
            # a trial that failed, or one a real out-of-memory error split, makes another composition
            or composition(shapes) != composition([self.shape(cfg, split) for (cfg, split), _ in trained])
            or any(m.get("cohort_size") != len(planned) or not m.get("train_seconds") for m in metrics)
        ):
            return
        train_seconds = max(m["train_seconds"] for m in metrics)
        self.planner.record(
            shapes,
            peak - self._before_mb,
            train_tokens_per_s=sum(m["train_tokens"] for m in metrics) / train_seconds,
            eval_tokens_per_s=sum(m.get("eval_tokens_per_s", 0.0) for m in metrics) or None,
        )

    def itemsize(self, cfg: TrialConfig) -> int:
        """Bytes per element of the trial's compute dtype on this device."""
        return compute_dtype(cfg.quant.bnb_4bit_compute_dtype, self.device).itemsize

    def shape(self, cfg: TrialConfig, split: int = 1) -> TrialShape:
        return self.planner.shape(cfg, self.itemsize(cfg), split)
