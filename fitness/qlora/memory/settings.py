"""What the memory layer reads of the ``fitness:`` section: the limits, the cohort size, and what a
validation pass holds.

Built from :class:`~fitness.qlora.spec.QLoRASpec` (``memory_settings``), which checks each key;
nothing in this folder reads the spec itself. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

from fitness.qlora.memory.footprint import EvalShape


@dataclass(frozen=True)
class MemorySettings:
    """``fitness.memory_limit_mb``, ``trial_memory_limit_mb``, ``cohort`` and ``objectives`` (one that
    measures a trial's own cost keeps ``auto`` cohorts at one trial); ``evaluation``: ``eval_batch_size``
    and ``eval_seq_length``, the validation pass whose memory a trial needs too (defaults: the spec's)."""

    memory_limit_mb: float | None
    trial_memory_limit_mb: float | None
    cohort: int | str  # "auto" or a number of trials
    objectives: tuple[str, ...]
    evaluation: EvalShape
