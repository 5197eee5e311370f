"""What the base model is made of, read from its config alone: no weights are loaded.

The fitness narrows its gene declarations with this before a run starts (a module the
model lacks, a sequence past its context). Reading it imports torch and transformers
(~3 s of CPU, nearly all imports), so a local model's answer is kept in the cache dir:
later runs read it in milliseconds, without importing either.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from evo.trial import ConfigError
from fitness.qlora.base.shape import ModelShape, model_shape
from fitness.qlora.base.source import ModelSource, converted_gguf_dir

log = logging.getLogger(__name__)

# Where configs keep the context length, most common first (GPT-2 family: n_positions / n_ctx).
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx", "max_seq_len")


@dataclass(frozen=True)
class Architecture:
    """``context_length`` in tokens (None when the config doesn't say); ``linear_modules``:
    the leaf names of the layers LoRA can target, in the model's order, output head excluded."""

    context_length: int | None
    linear_modules: tuple[str, ...]
    shape: ModelShape | None = None  # the sizes memory is estimated from (memory/footprint.py)


def read_architecture(
    source: ModelSource, cache_root: Path, config_file: Path | None = None, *, save: bool = True
) -> Architecture | None:
    """The model's architecture from its config (``config_file``: a hub model's, as
    ``hub.find_model_config`` found it). None when a local model's config can't be read
    (custom code, an architecture transformers lacks); for a hub model that is a ConfigError:
    its weights will not load either. ``save=False`` writes nothing, not even the cache (``evo plan``)."""
    cached = _cache_file(source, cache_root)
    if cached is not None and cached.is_file():
        saved = _load(cached)
        if saved is not None:
            return saved
    try:
        config = _config(source, cache_root, config_file)
        model = _meta_model(config)
        found = Architecture(_context_length(config), _linear_modules(model), model_shape(config, model))
    except Exception as exc:  # a local model can still go ahead, only unchecked
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        if not source.is_local:
            raise ConfigError(
                f"fitness.model: transformers {metadata.version('transformers')} cannot read the config of "
                f"{source.name_or_path} ({reason}), nor load the model: upgrade it, or choose another model"
            ) from None
        log.warning(
            "could not read the config of %s (%s); module names and context length are not checked",
            source.name_or_path,
            reason,
        )
        return None
    if cached is not None and save:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            staging = cached.with_suffix(f".{os.getpid()}.tmp")
            staging.write_text(json.dumps(asdict(found)))
            staging.replace(cached)
        except OSError:  # a read-only cache: read the config every time
            pass
    return found


def _load(path: Path) -> Architecture | None:
    """The cached answer; None when it is unreadable (then it is read again and rewritten)."""
    try:
        saved = json.loads(path.read_text())
        context, modules = saved["context_length"], tuple(saved["linear_modules"])
        shape = ModelShape.from_dict(saved["shape"])  # caches from before shapes were kept lack it: read again
    except (OSError, ValueError, KeyError, TypeError):
        return None
    sound = (context is None or type(context) is int) and all(isinstance(m, str) and m for m in modules)
    return Architecture(context, modules, shape) if sound and shape is not None else None


def _cache_file(source: ModelSource, cache_root: Path) -> Path | None:
    """Local models only (their identity changes with their files); a hub repo may change under its id.
    Keyed by the transformers version too: it decides the module tree."""
    if not source.is_local:
        return None
    key = hashlib.sha256(f"{source.identity}:{metadata.version('transformers')}".encode()).hexdigest()[:24]
    return cache_root / "architecture" / f"{key}.json"


def _config(source: ModelSource, cache_root: Path, config_file: Path | None) -> Any:
    from transformers import AutoConfig

    if config_file is not None:
        return AutoConfig.from_pretrained(config_file)
    if source.gguf_file is None:
        return AutoConfig.from_pretrained(source.name_or_path)
    converted = converted_gguf_dir(source, cache_root)
    if (converted / "config.json").is_file():  # the same config, without parsing the GGUF (~4 s for 100 MB)
        return AutoConfig.from_pretrained(converted)
    return AutoConfig.from_pretrained(source.name_or_path, gguf_file=source.gguf_file)


def _context_length(config: Any) -> int | None:
    text = config.get_text_config()  # multimodal configs nest the language model's
    for key in _CONTEXT_KEYS:
        value = getattr(text, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _meta_model(config: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):  # shapes only: allocates nothing, even for a 70B config
        return AutoModelForCausalLM.from_config(config)


def _linear_modules(model: Any) -> tuple[str, ...]:
    import torch
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings()  # what peft's "all-linear" leaves out
    names = (
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.Linear, Conv1D)) and module is not head
    )
    return tuple(dict.fromkeys(n for n in names if n != "lm_head"))
