"""Trials sized to the device's memory before they start, from the footprint estimate. No torch.

``MemoryPlanner`` turns ``footprint.estimate`` (corrected by the calibration's measured peaks)
into decisions, against a :class:`Room`:

- ``fit``: the micro-batch a trial runs at. A trial whose estimated peak is past the room
  trains each batch in ``split`` pieces (micro-batch ``per_device_train_batch_size / split``,
  ``split`` times the accumulation: the same effective batch, the same data, the same loss up
  to rounding). ``split`` is the smallest divisor of the micro-batch that fits (for a power of
  two: halving until it fits); a trial that does not fit at micro-batch 1 cannot run.
- ``capacity``: how many of a cohort's trials fit beside the base at once.

The room is what the trials may add over the resident base: ``fitness.memory_limit_mb`` less
the base's estimate, or on CUDA ``CUDA_USABLE`` of the free memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from fitness.qlora.base.shape import ModelShape
from fitness.qlora.genes import TrialConfig
from fitness.qlora.memory.calibration import Calibration
from fitness.qlora.memory.footprint import EvalShape, Footprint, TrialShape, estimate, megabytes

# Of the free CUDA memory a plan may fill: the caching allocator's fragmentation, cuBLAS's
# workspaces and the kernels' scratch need the rest (the estimate counts tensors only).
CUDA_USABLE = 0.9
# A card of N GB in ``evo plan`` (no GPU at hand): N GiB less what the CUDA context and the
# kernels take before any tensor (300-600 MB with torch 2 on an A100 / H100).
CUDA_CONTEXT_MB = 512.0


class DoesNotFit(MemoryError):
    """A trial whose estimated peak is past the device's memory even at micro-batch 1: an OOM before it starts."""


def next_split(micro_batch: int, split: int) -> int | None:
    """The smallest split above ``split`` that cuts ``micro_batch`` rows evenly; None when it is at 1 row."""
    return next((s for s in range(split + 1, micro_batch + 1) if micro_batch % s == 0), None)


@dataclass(frozen=True)
class Room:
    """Memory a cohort may use. ``with_base``: ``mb`` holds the base too (a limit, a card's size);
    else ``mb`` is over the resident base (the free CUDA memory, measured with the base loaded).
    ``usable`` of what is left beside the base may be planned; ``what`` names it in messages."""

    mb: float
    with_base: bool
    what: str
    usable: float = 1.0

    @classmethod
    def limit(cls, mb: float) -> Room:
        """``fitness.memory_limit_mb``: the base and the cohort's estimate together, on any device."""
        return cls(mb, True, f"fitness.memory_limit_mb={mb:g} less the base")

    @classmethod
    def free_cuda(cls, free_mb: float) -> Room:
        """The free CUDA memory, measured with the base resident."""
        return cls(free_mb, False, f"{CUDA_USABLE:.0%} of the {megabytes(free_mb)} free on the GPU", CUDA_USABLE)

    @classmethod
    def card(cls, gb: float) -> Room:
        """A GPU of ``gb`` GB before anything is loaded (``evo plan``'s columns)."""
        what = f"{CUDA_USABLE:.0%} of a {gb:g} GB GPU less its CUDA context and the base"
        return cls(gb * 1024 - CUDA_CONTEXT_MB, True, what, CUDA_USABLE)

    def beside(self, base_mb: float) -> float:
        """MB the trials may add over a base of ``base_mb``."""
        return self.usable * (self.mb - base_mb if self.with_base else self.mb)


@dataclass(frozen=True)
class Fit:
    """A trial's micro-batch against the room: ``split`` pieces per batch, the calibrated footprint there."""

    split: int
    micro_batch: int
    footprint: Footprint
    room: Room | None  # None: no limit known (a CPU without fitness.memory_limit_mb)

    @property
    def room_mb(self) -> float | None:
        return None if self.room is None else self.room.beside(self.footprint.base)

    @property
    def fits(self) -> bool:
        room = self.room_mb
        return room is None or self.footprint.trials <= room

    def why(self) -> str:
        """One line: the estimate against the room, and the largest parts."""
        footprint = self.footprint
        head = f"estimated peak {megabytes(footprint.total)} at micro-batch {self.micro_batch} ({footprint.biggest()})"
        room = self.room_mb
        if self.room is None or room is None:
            return head
        verdict = "fits in" if self.fits else "is past"
        beside = f"{megabytes(footprint.trials)} beside the base {verdict} the {megabytes(room)} of room"
        return f"{head}: {beside} ({self.room.what})"


class MemoryPlanner:
    """Estimates for one model, corrected by ``calibration``; ``evaluation``: the validation's block shape."""

    def __init__(self, model: ModelShape, evaluation: EvalShape, calibration: Calibration) -> None:
        self.model = model
        self.evaluation = evaluation
        self.calibration = calibration

    def shape(self, cfg: TrialConfig, dtype_bytes: int, split: int = 1) -> TrialShape:
        """The trial's shape at ``split`` pieces per batch."""
        whole = TrialShape.of(cfg, self.model, dtype_bytes)
        return replace(whole, micro_batch=whole.micro_batch // split) if split > 1 else whole

    def estimated(self, shapes: Sequence[TrialShape]) -> Footprint:
        """The footprint as ``footprint.estimate`` gives it, uncorrected (what the calibration's ratios divide)."""
        return estimate(self.model, shapes, self.evaluation)

    def ratio(self, shapes: Sequence[TrialShape]) -> float:
        """measured / estimated for this composition, from the calibration (1: never measured near it)."""
        return self.calibration.ratio(shapes, self.estimated(shapes).trials)[0]

    def footprint(self, shapes: Sequence[TrialShape]) -> Footprint:
        """The estimate, scaled by the calibration's measured/estimated ratio for this composition."""
        raw = self.estimated(shapes)
        ratio, _ = self.calibration.ratio(shapes, raw.trials)
        return raw.scaled(ratio)

    def fit(self, cfg: TrialConfig, dtype_bytes: int, room: Room | None) -> Fit:
        """The fewest pieces each batch must be cut into to fit ``room``; ``fits`` False when none does."""
        micro, split = cfg.per_device_train_batch_size, 1
        while True:
            found = Fit(split, micro // split, self.footprint([self.shape(cfg, dtype_bytes, split)]), room)
            following = next_split(micro, split)
            if found.fits or following is None:
                return found
            split = following

    def capacity(self, shapes: Sequence[TrialShape], room: Room | None) -> int:
        """How many of ``shapes`` may train at once: the most k whose k largest fit together (at least 1)."""
        if room is None or len(shapes) <= 1:
            return len(shapes)
        largest = sorted(shapes, key=lambda s: -self.footprint([s]).trials)
        k = 1
        while k < len(largest):
            together = self.footprint(largest[: k + 1])
            if together.trials > room.beside(together.base):
                break
            k += 1
        return k

    def record(
        self,
        shapes: Sequence[TrialShape],
        measured_mb: float,
        *,
        train_tokens_per_s: float | None = None,
        eval_tokens_per_s: float | None = None,
    ) -> None:
        """Keep a cohort's measured peak over the base (and its speeds), against its uncorrected estimate."""
        self.calibration.record(
            shapes,
            estimated_mb=self.estimated(shapes).trials,
            measured_mb=measured_mb,
            train_tokens_per_s=train_tokens_per_s,
            eval_tokens_per_s=eval_tokens_per_s,
        )
