"""The CUDA devices a worker can be pinned to, as labels ``CUDA_VISIBLE_DEVICES`` takes.

A label names a device of the machine (an index or a UUID), not an index among the
devices the driver sees: under ``CUDA_VISIBLE_DEVICES=2,3`` the labels are "2" and "3",
so a worker started with ``CUDA_VISIBLE_DEVICES=3`` gets the driver's second GPU.
"""

from __future__ import annotations

import os


def visible_cuda_devices() -> tuple[str, ...]:
    """The labels of the CUDA devices this process sees; empty without any."""
    import torch  # only now: the driver imports it only to count its devices

    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return tuple(str(index) for index in range(count))
    labels = [entry.strip() for entry in listed.split(",") if entry.strip()]
    return tuple(labels[:count])  # CUDA stops at the first entry it cannot use
