"""What the base layer reads of the ``fitness:`` section: which model, on which device, cached where.

Built from :class:`~fitness.qlora.spec.QLoRASpec` (``model_settings``), which checks each key;
nothing in this folder reads the spec itself. No torch here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

DEFAULT_MODEL = "smollm2-135m"


class Device(str, enum.Enum):
    AUTO = "auto"  # cuda when torch sees a GPU, cpu otherwise
    CPU = "cpu"
    CUDA = "cuda"


@dataclass(frozen=True)
class ModelSettings:
    """``fitness.model``, ``gguf_file``, ``device`` and ``cache_dir`` (their defaults are the spec's)."""

    model: str
    gguf_file: str | None
    device: Device
    cache_dir: str | None  # None: $EVO_CACHE_DIR, else $XDG_CACHE_HOME/evo-qlora (source.default_cache_root)
