"""What a trainer file is written from, resolved: precision, training length, warmup, model, target version.

No torch here. Every value comes from the run: the best trial's applied config (its
``bnb_4bit_compute_dtype`` is the dtype it trained in, never "auto"), the optimizer
steps each trial trained, the device the run used, the model it loaded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evo.trial import ConfigError

# transformers 5.23 renamed gradient_checkpointing to activation_checkpointing (the old name warns until v6)
ACTIVATION_CHECKPOINTING_SINCE = (5, 23)
DATA_FORMATS = ("chat", "text", "prompt_completion")  # one kind of document per exported dataset


@dataclass(frozen=True)
class ExportRequest:
    """The best trial and what the run recorded of it, with the user's choices for the file."""

    config: Mapping[str, Any]  # the trial's applied config
    spec: Mapping[str, Any]  # the run's fitness section
    adapter_path: str | None = None
    data_format: str | None = None  # as the run recorded it: chat, text, prompt_completion, or a mix ("chat+text")
    device: str | None = None  # the run's device: cpu or cuda
    trained_steps: int | None = None  # optimizer steps each trial trained (the run's budget)
    steps: int | None = None  # --steps: the production run's length
    epochs: float | None = None  # --epochs: instead of steps
    transformers: tuple[int, int] | None = None  # the trainer's transformers version (major, minor); None: unknown
    out: Path | None = None  # the export file; the dataset and template files are written beside it
    notes: tuple[str, ...] = ()  # header lines: which run, trial and values


@dataclass(frozen=True)
class Length:
    """How long the trainer trains: ``max_steps`` or ``epochs``, and the warmup in the form it takes."""

    max_steps: int | None
    epochs: float | None
    warmup_steps: int | float  # an int with max_steps; with epochs the ratio where the target takes it here
    warmup_ratio: float | None  # with epochs, for targets that still name it (transformers 4)
    note: str


def parse_version(text: str) -> tuple[int, int]:
    """``--target-version``: "4.57", "5", "5.25.0" -> (major, minor)."""
    found = re.fullmatch(r"\s*(\d+)(?:\.(\d+))?(?:\.[\w.+-]*)?\s*", str(text))
    if not found:
        raise ConfigError(f"--target-version: {text!r} is not a transformers version such as 4.57 or 5.25")
    return int(found.group(1)), int(found.group(2) or 0)


def installed_transformers() -> tuple[int, int] | None:
    from importlib import metadata

    try:
        return parse_version(metadata.version("transformers"))
    except (metadata.PackageNotFoundError, ConfigError):
        return None


def compute_dtype(config: Mapping[str, Any]) -> str:
    """The dtype the trial trained in: float32, bfloat16 or float16 (an old run's "auto": float32)."""
    dtype = config.get("bnb_4bit_compute_dtype")
    return dtype if dtype in ("bfloat16", "float16", "float32") else "float32"


def precision(config: Mapping[str, Any]) -> dict[str, bool]:
    """Both mixed-precision flags, stated: a trainer left to choose picks its own (TRL: bf16)."""
    dtype = compute_dtype(config)
    return {"bf16": dtype == "bfloat16", "fp16": dtype == "float16"}


def length(request: ExportRequest) -> Length:
    """The training length the user asked for (default: what each trial trained) and its warmup.

    The trials warmed up for ``ceil(warmup_ratio * steps)`` steps, as the trainers compute
    it from a ratio; with a known length the export writes that integer (transformers 4
    refuses a float ``warmup_steps``, 5 has no ``warmup_ratio``)."""
    ratio = float(request.config.get("warmup_ratio", 0.0) or 0.0)
    if request.config.get("lr_scheduler_type") == "constant":
        ratio = 0.0  # a constant schedule has no warmup, in the trials as in the trainers
    if request.epochs is not None:
        major = (request.transformers or (5, 0))[0]
        note = f"trains {request.epochs:g} epochs (--epochs); warmup {ratio:g} of the steps"
        if major < 5:
            return Length(None, request.epochs, 0, ratio or None, note)
        return Length(None, request.epochs, ratio if ratio < 1 else 0, None, note)
    if request.steps is not None:
        steps, note = request.steps, f"trains {request.steps} steps (--steps)"
    elif request.trained_steps is not None:
        steps = request.trained_steps
        note = (
            f"max_steps {steps}: what each trial trained (the run's budget); the production run is longer: "
            "export with --steps N or --epochs E"
        )
    else:
        raise ConfigError("--steps: the run did not record how long its trials trained; give --steps N or --epochs E")
    return Length(steps, None, math.ceil(ratio * steps), None, note)


def checkpointing(config: Mapping[str, Any], target: tuple[int, int] | None) -> dict[str, bool]:
    """Gradient checkpointing as the trial had it, under the name the target's transformers takes."""
    if "gradient_checkpointing" not in config:
        return {}
    new = target is not None and target >= ACTIVATION_CHECKPOINTING_SINCE
    return {"activation_checkpointing" if new else "gradient_checkpointing": bool(config["gradient_checkpointing"])}


def one_format(request: ExportRequest) -> str:
    """The run's one kind of document; a mix is refused (each trainer takes one kind per dataset)."""
    kind = request.data_format or ""
    if kind not in DATA_FORMATS:
        raise ConfigError(
            f"--format: the run's data is {kind or 'of no recorded kind'}; a trainer file takes one kind of "
            f"document ({', '.join(DATA_FORMATS)}): use --format hf"
        )
    return kind


def model_location(spec: Mapping[str, Any]) -> tuple[str, list[str]]:
    """What the trainer loads, and notes on it: a GGUF model's dequantized copy is what the
    trials trained on (the trainers don't load GGUF for training)."""
    from fitness.qlora.base.source import (
        converted_gguf_dir,
        default_cache_root,
        portable_tokenizer_class,
        resolve_model,
    )
    from fitness.qlora.spec import DEFAULT_MODEL, QLoRASpec

    try:
        parsed = QLoRASpec.from_dict(spec)
        source = resolve_model(parsed.model_settings)
    except ConfigError as exc:  # moved or never here: the name as the run had it
        return str(spec.get("model", DEFAULT_MODEL)), [f"model not found here ({exc}); set the model's path"]
    notes = []
    if parsed.model == DEFAULT_MODEL:
        notes.append("smollm2-135m is HuggingFaceTB/SmolLM2-135M-Instruct (the trials used its GGUF Q4_1, dequantized)")
    if source.gguf_file is None:
        return source.name_or_path, notes
    converted = converted_gguf_dir(source, default_cache_root(parsed.model_settings))
    if (converted / "config.json").is_file():
        portable_tokenizer_class(converted)  # a copy made before it was saved so
        return str(converted), notes
    return str(Path(source.name_or_path) / source.gguf_file), [*notes, "a GGUF file: convert it to safetensors first"]
