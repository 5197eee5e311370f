"""The ``executor`` section of a run config: where trials run.

Settings only (no Ray): the executors in ``evo.executors`` read them from the config.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from evo.config._fields import check_fields, rule
from evo.trial import ConfigError

__all__ = ["ExecutorSettings", "ExecutorType"]


class ExecutorType(str, enum.Enum):
    LOCAL = "local"  # trials in the driver process
    RAY = "ray"  # trials on actors of a Ray cluster


@dataclass(frozen=True)
class ExecutorSettings:
    """Where trials run. ``workers`` is how many run at once: None means 1 locally and,
    on Ray, as many as the cluster's resources hold (one per GPU, or per
    ``cpus_per_trial`` CPUs on CPU-only clusters)."""

    type: ExecutorType = field(
        default=ExecutorType.LOCAL, metadata=rule(help="local: in the driver; ray: on Ray actors")
    )
    address: str | None = field(
        default=None,
        metadata=rule(
            what="a Ray address such as 'auto'",
            help="Ray cluster address ('auto', 'ray://head:10001'); null starts one",
        ),
    )
    workers: int | None = field(
        default=None, metadata=rule(ge=1, help="trials at once; null: 1 locally, on Ray what the cluster holds")
    )
    cpus_per_trial: float = field(
        default=1.0,
        metadata=rule(gt=0, help="Ray resources reserved per actor; fractions share a CPU between sleepers"),
    )
    gpus_per_trial: float | None = field(
        default=None, metadata=rule(ge=0, help="null: 1 when the cluster has GPUs, else 0")
    )
    max_retries: int = field(
        default=2, metadata=rule(ge=0, help="re-runs of a trial whose worker died, before it counts as failed (killed)")
    )

    def __post_init__(self) -> None:
        check_fields(self, "executor")
        if self.address is not None and self.type is not ExecutorType.RAY:
            raise ConfigError("executor.address: only the ray executor connects to a cluster")
