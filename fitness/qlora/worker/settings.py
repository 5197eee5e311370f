"""What a worker is built from: each layer's slice of the ``fitness:`` section, and the worker's own keys.

Built from :class:`~fitness.qlora.spec.QLoRASpec` (``worker_settings``), which checks each key;
the supervisor sends it to the worker process as it is (a frozen dataclass pickles). No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

from fitness.qlora.base.settings import ModelSettings
from fitness.qlora.data.settings import DataSettings
from fitness.qlora.genes import LRScaling
from fitness.qlora.memory.settings import MemorySettings
from fitness.qlora.training.settings import EvalSettings


@dataclass(frozen=True)
class WorkerSettings:
    """The slices the runner hands each layer, and ``fitness.lr_scaling``, ``lr_reference_batch``
    (how the learning_rate gene is applied), ``objectives`` (what a result reports),
    ``trial_timeout``, ``startup_timeout`` and ``max_worker_rss_growth_mb`` (when the supervisor replaces a worker)."""

    model: ModelSettings
    data: DataSettings
    memory: MemorySettings
    evaluation: EvalSettings
    lr_scaling: LRScaling
    lr_reference_batch: int
    objectives: tuple[str, ...]
    trial_timeout: float
    startup_timeout: float
    max_worker_rss_growth_mb: float
