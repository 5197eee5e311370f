"""How many trials train at once (``fitness.cohort``), learnt per cohort shape on the device.

``cohort: N`` fixes it. ``auto`` starts small and doubles while the cohort's training
tokens/s grows by at least ``GAIN`` per doubling and, on CUDA, while the free memory holds
twice the cohort's share; an out-of-memory error halves it for good. What is learnt is kept
for the worker's lifetime, per cohort shape (quantization, sequence length, checkpointing).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from fitness.qlora.memory.settings import MemorySettings

# What auto means. CPU: one trial at a time. A CPU step is compute-bound, so a cohort saves no
# work there, and experiments/benchmark_cohorts.py measured cohorts slower than the same trials one
# after another on 2 cores (docs/cohorts.md); steady-state evolution also learns from each
# result sooner with one trial in flight. CUDA: start at CUDA_START and double while it pays, up to CUDA_CAP.
CPU_AUTO = 1
CUDA_START = 2
CUDA_CAP = 32
# Objectives that measure a trial's own cost: in a cohort, they would measure its cohort's instead.
PER_TRIAL_COSTS = frozenset({"peak_memory_mb", "wall_seconds", "train_tokens_per_s"})
GAIN = 1.10  # a doubling must bring 10% more tokens/s, else the smaller cohort is kept
MEMORY_MARGIN = 0.85  # of the free memory a doubled cohort may plan to use
MEASURED_STEPS = 3  # micro-steps timed at a size before deciding (after one warm-up step)


@dataclass
class CohortLimit:
    """The size of one cohort shape: ``size`` trials at once, at most ``ceiling``."""

    size: int
    ceiling: int
    learning: bool
    device: str = "cpu"
    _times: dict[int, list[float]] = field(default_factory=dict)  # tokens/s per micro-step, by size
    _seen: dict[int, int] = field(default_factory=dict)
    _previous: int | None = None  # the size before the last doubling
    _base_bytes: int = 0

    def observe(self, trials: int, tokens: int, seconds: float) -> None:
        """One micro-step of ``trials`` trials trained ``tokens`` tokens in ``seconds``."""
        if not self.learning or trials != self.size or seconds <= 0:
            return
        self._seen[trials] = self._seen.get(trials, 0) + 1
        if self._seen[trials] == 1:
            return  # warm-up: first-step allocations, optimizer states
        rates = self._times.setdefault(trials, [])
        rates.append(tokens / seconds)
        if len(rates) < MEASURED_STEPS:
            return
        rate = statistics.median(rates)
        before = statistics.median(self._times[self._previous]) if self._previous else None
        grown = min(2 * self.size, self.ceiling)
        if before is not None and rate < GAIN * before:
            self.size, self.learning = self._previous or 1, False  # the doubling did not pay: go back, stay
        elif grown > self.size and self._memory_allows(grown):
            self._previous, self.size = self.size, grown
        else:
            self.learning = False

    def out_of_memory(self, trials: int) -> None:
        """``trials`` at once did not fit: never try that many again."""
        self.ceiling = max(1, min(self.ceiling, trials - 1))
        self.size = max(1, min(self.size, trials // 2))
        self.learning = False

    def _memory_allows(self, trials: int) -> bool:
        if self.device != "cuda":
            return True  # CPU: the cohort's memory grows slowly next to the base; an OOM still splits it
        import torch

        free, _ = torch.cuda.mem_get_info()
        used = torch.cuda.max_memory_allocated() - self._base_bytes
        per_trial = used / max(self.size, 1)
        return per_trial * (trials - self.size) < MEMORY_MARGIN * free

    def mark_base(self) -> None:
        """Remember the memory the base holds before the cohort, so the cohort's share can be told apart."""
        if self.device == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()
            self._base_bytes = torch.cuda.memory_allocated()


@dataclass(frozen=True)
class CohortPlan:
    """Cohorts start at ``start`` trials and may grow to ``cap`` (equal: a fixed size)."""

    start: int
    cap: int


def cohort_plan(settings: MemorySettings, device: str) -> CohortPlan:
    """What ``fitness.cohort`` means on ``device`` ("cpu" or "cuda") for these objectives."""
    if settings.cohort != "auto":
        return CohortPlan(settings.cohort, settings.cohort)
    if PER_TRIAL_COSTS & set(settings.objectives):
        return CohortPlan(1, 1)
    if device == "cuda":
        return CohortPlan(CUDA_START, CUDA_CAP)
    return CohortPlan(CPU_AUTO, CPU_AUTO)


class CohortSizer:
    """The :class:`CohortLimit` of every cohort shape seen by this worker."""

    def __init__(self, plan: CohortPlan, *, device: str) -> None:
        self.plan = plan
        self.device = device
        self._limits: dict[object, CohortLimit] = {}

    def limit(self, shape: object) -> CohortLimit:
        if shape not in self._limits:
            start, cap = self.plan.start, self.plan.cap
            self._limits[shape] = CohortLimit(start, cap, learning=start < cap, device=self.device)
        return self._limits[shape]
