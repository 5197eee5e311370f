"""The ``executor`` section of a run config: where trials run.

Settings only (no Ray): the executors in ``evo.executors`` read them from the config.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from evo.config._fields import check_fields, rule
from evo.trial import ConfigError

__all__ = ["AUTO_DEVICES", "ExecutorSettings", "ExecutorType"]

AUTO_DEVICES = "auto"  # executor.devices: one worker per device the fitness sees


class ExecutorType(str, enum.Enum):
    LOCAL = "local"  # trials in the driver process
    RAY = "ray"  # trials on actors of a Ray cluster


@dataclass(frozen=True)
class ExecutorSettings:
    """Where trials run. ``workers`` is how many run at once: None means 1 locally and,
    on Ray, as many as the cluster's resources hold (one per GPU, or per
    ``cpus_per_trial`` CPUs on CPU-only clusters).

    ``devices`` (local): one worker per device, each pinned to it and training its own
    cohorts; ``auto`` asks the fitness which devices it sees (QLoRA: the visible CUDA
    devices; none on a machine without GPUs, which runs one worker as before). A list names
    the labels, as ``CUDA_VISIBLE_DEVICES`` takes them. Several devices answer in
    completion order: ``mode: generational`` selects in slot order, so a seed still gives
    one run; ``mode: steady_state`` breeds from whichever trials ended first, so two runs
    of one seed may differ (each one still resumes exactly where it stopped)."""

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
        default=None,
        metadata=rule(
            ge=1,
            help="trials at once; null: locally 1 per device (a cohort: fitness.cohort), on Ray what the cluster holds",
        ),
    )
    cpus_per_trial: float = field(
        default=1.0,
        metadata=rule(gt=0, help="Ray resources reserved per actor; fractions share a CPU between sleepers"),
    )
    gpus_per_trial: float | None = field(
        default=None,
        metadata=rule(
            ge=0, help="Ray: null is 1 when the cluster has GPUs, else 0; locally null or 1 (a whole device)"
        ),
    )
    devices: str | tuple[int | str, ...] = field(
        default=AUTO_DEVICES,
        metadata=rule(
            what="`auto` or a list of device labels",
            help="local: one worker per device, pinned with CUDA_VISIBLE_DEVICES; auto: each visible CUDA device "
            "(one without GPUs); with several, generational runs of a seed agree, steady_state ones may differ; "
            "Ray reserves GPUs itself (gpus_per_trial)",
        ),
    )
    max_retries: int = field(
        default=2, metadata=rule(ge=0, help="re-runs of a trial whose worker died, before it counts as failed (killed)")
    )

    def __post_init__(self) -> None:
        check_fields(self, "executor")
        if self.address is not None and self.type is not ExecutorType.RAY:
            raise ConfigError("executor.address: only the ray executor connects to a cluster")
        object.__setattr__(self, "devices", _device_labels(self.devices))
        if isinstance(self.devices, tuple):
            if self.type is ExecutorType.RAY:
                raise ConfigError(
                    "executor.devices: Ray gives each actor the GPU it reserves (gpus_per_trial); "
                    "a list of devices is for the local executor"
                )
            if self.workers is not None:
                raise ConfigError(
                    "executor.workers: threads sharing one fitness, and executor.devices lists devices "
                    "that run one worker each; set only one of them"
                )
        if self.type is ExecutorType.LOCAL and self.gpus_per_trial not in (None, 1):
            raise ConfigError(
                f"executor.gpus_per_trial: the local executor gives each worker one whole device "
                f"(executor.devices), not {self.gpus_per_trial:g}; only ray shares GPUs between trials"
            )


def _device_labels(value: object) -> str | tuple[int | str, ...]:
    """``auto``, or the labels as a tuple: distinct, each a whole number >= 0 or a name
    that ``CUDA_VISIBLE_DEVICES`` can hold alone (no comma, no space)."""
    accepted = "auto or a non-empty list of distinct device labels (0, 1, ... or names)"
    if value == AUTO_DEVICES:
        return AUTO_DEVICES
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"executor.devices: must be {accepted}, got {value!r}")
    seen: set[str] = set()
    for label in value:
        is_index = isinstance(label, int) and not isinstance(label, bool) and label >= 0
        is_name = isinstance(label, str) and label != "" and not any(c == "," or c.isspace() for c in label)
        if not (is_index or is_name):
            raise ConfigError(f"executor.devices: {label!r} is not a device label; must be {accepted}")
        if str(label) in seen:
            raise ConfigError(f"executor.devices: {label!r} is listed twice; each device runs one worker")
        seen.add(str(label))
    return tuple(value)
