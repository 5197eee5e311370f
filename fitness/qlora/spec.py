"""The ``fitness:`` section of a run config for the QLoRA fitness, validated.

Every key is optional except ``type``; the defaults below are the embedded,
offline run (SmolLM2-135M on the pydoc corpus). Bad values raise a one-line
:class:`ConfigError` naming the key, before any worker starts.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, NoReturn

from evo.trial import ConfigError, Direction, renamed

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_DATA = "pydoc"

# The keys naming the record fields (dataset columns) a document is read from.
DATA_FIELD_KEYS = ("text_field", "messages_field", "prompt_field", "completion_field")

# What ``objectives`` may list: val_perplexity first, then any of the trial's cost measures.
OBJECTIVES = {
    "val_perplexity": Direction.MINIMIZE,
    "peak_memory_mb": Direction.MINIMIZE,  # peak RSS on CPU, peak CUDA allocated on GPU
    "wall_seconds": Direction.MINIMIZE,  # the whole trial, loading a checkpoint and scoring included
    "train_tokens_per_s": Direction.MAXIMIZE,
    "trainable_parameters": Direction.MINIMIZE,
}


class Device(str, enum.Enum):
    AUTO = "auto"  # cuda when torch sees a GPU, cpu otherwise
    CPU = "cpu"
    CUDA = "cuda"


class LRScaling(str, enum.Enum):
    """How the learning-rate gene is rescaled with the effective batch size."""

    NONE = "none"
    LINEAR = "linear"  # lr * batch / reference
    SQRT = "sqrt"  # lr * sqrt(batch / reference)


@dataclass(frozen=True)
class QLoRASpec:
    type: str = field(default="qlora", metadata={"help": "the QLoRA fitness: a real 4-bit LoRA fine-tune per trial"})
    model: str = field(
        default=DEFAULT_MODEL, metadata={"help": '"smollm2-135m", a local directory, a .gguf file or a hub id'}
    )
    gguf_file: str | None = field(
        default=None, metadata={"help": "the file in `model` (a directory or hub repo) to load from GGUF"}
    )
    data: str = field(
        default=DEFAULT_DATA,
        metadata={"help": "pydoc, .txt, .jsonl, .json, .parquet, .arrow, .csv, save_to_disk dir, hf:hub/id"},
    )
    validation_data: str | None = field(
        default=None, metadata={"help": "the same kinds as data: validate on it instead of an automatic split"}
    )
    data_split: str | None = field(
        default=None, metadata={"help": 'a dataset with splits (save_to_disk, hub): the one to train on; null: "train"'}
    )
    validation_split: str | None = field(
        default=None, metadata={"help": 'the split to validate on (of validation_data, else data); null: "validation"'}
    )
    data_subset: str | None = field(default=None, metadata={"help": "a hub dataset's configuration name"})
    text_field: str = field(default="text", metadata={"help": "the record field (column) read as plain text"})
    messages_field: str = field(
        default="messages", metadata={"help": "the field holding a chat conversation (a list of {role, content})"}
    )
    prompt_field: str = field(default="prompt", metadata={"help": "the field holding a prompt (no loss on it)"})
    completion_field: str = field(
        default="completion", metadata={"help": "the field holding the completion the loss is on"}
    )
    validation_fraction: float = field(
        default=0.1, metadata={"help": "of topics / files / lines / records, held out when validation_data is unset"}
    )
    validation_tokens: int = field(
        default=4096,
        metadata={
            "help": "cap on the fixed validation set, same for every trial; data giving fewer than 128 "
            "validation tokens, or a training split under one batch of the smallest trial, is refused"
        },
    )
    eval_seq_length: int = field(
        default=256, metadata={"help": "block length of the validation set (independent of the gene)"}
    )
    eval_every: int = field(
        default=0,
        metadata={
            "help": "optimizer steps between intermediate validations; 0: only at the end and where early "
            "stopping judges the trial"
        },
    )
    eval_batch_size: int = field(default=8, metadata={"help": "validation blocks per forward pass"})
    device: Device = field(
        default=Device.AUTO,
        metadata={"help": "auto: a GPU when there is one, else the CPU; cuda is refused where torch sees no GPU"},
    )
    trial_timeout: float = field(default=1800.0, metadata={"help": "seconds per trial before the worker is killed"})
    lr_scaling: LRScaling = field(
        default=LRScaling.NONE, metadata={"help": "rescale the learning_rate gene with the effective batch"}
    )
    lr_reference_batch: int = field(
        default=8, metadata={"help": "effective batch at which the learning_rate gene applies unscaled"}
    )
    max_worker_rss_growth_mb: float = field(
        default=2048.0, metadata={"help": "worker replaced when its RSS grew more than this"}
    )
    trial_memory_limit_mb: float | None = field(
        default=None,
        metadata={
            "help": "CPU: a hard cap on the address space a trial may add (past it, its allocations fail); null: none"
        },
    )
    memory_limit_mb: float | None = field(
        default=None,
        metadata={
            "help": "memory a cohort may use, the base included, as estimated before it trains: a trial past it runs "
            "in smaller micro-batches, or fails as oom without training; null: the free CUDA memory, none on a CPU"
        },
    )
    cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "model and token caches, a folder this user can write; null: $EVO_CACHE_DIR, else "
            "$XDG_CACHE_HOME/evo-qlora, else ~/.cache/evo-qlora"
        },
    )
    objectives: tuple[str, ...] = field(
        default=("val_perplexity",), metadata={"help": "what a trial reports to select on, val_perplexity first"}
    )
    cohort: int | str = field(
        default="auto", metadata={"help": 'trials trained at once on the shared base: "auto", or N (1 = one at a time)'}
    )

    def __post_init__(self) -> None:
        if self.type != "qlora":
            _fail("type", f"must be 'qlora', got {self.type!r}")
        for key in ("model", "data"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value.strip():
                _fail(key, f"must be a non-empty string, got {value!r}")
        if self.gguf_file is not None and (not isinstance(self.gguf_file, str) or not self.gguf_file):
            _fail("gguf_file", f"must be a file name, got {self.gguf_file!r}")
        for key in DATA_FIELD_KEYS:
            if not isinstance(getattr(self, key), str) or not getattr(self, key).strip():
                _fail(key, f"must be a non-empty field name, got {getattr(self, key)!r}")
        for key in ("validation_data", "data_split", "validation_split", "data_subset"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                _fail(key, f"must be a non-empty string or null, got {value!r}")
        _check_number(self, "validation_fraction", low=0.0, high=1.0, open_ends=True)
        for key in ("validation_tokens", "eval_seq_length", "eval_batch_size", "lr_reference_batch"):
            _check_int(self, key, low=1)
        _check_int(self, "eval_every", low=0)
        _check_number(self, "trial_timeout", low=0.0, open_ends=True)
        _check_number(self, "max_worker_rss_growth_mb", low=0.0, open_ends=True)
        for key in ("trial_memory_limit_mb", "memory_limit_mb"):
            if getattr(self, key) is not None:
                _check_number(self, key, low=0.0, open_ends=True)
        if self.cache_dir is not None and not isinstance(self.cache_dir, str):
            _fail("cache_dir", f"must be a path, got {self.cache_dir!r}")
        for key, kind in _ENUMS.items():  # from_dict made them; a direct construction must pass members
            if not isinstance(getattr(self, key), kind):
                _fail(key, _not_a_member(kind, getattr(self, key)))
        _check_objectives(self.objectives)
        if self.cohort != "auto" and (
            isinstance(self.cohort, bool) or not isinstance(self.cohort, int) or self.cohort < 1
        ):
            _fail("cohort", f"must be 'auto' or an integer >= 1, got {self.cohort!r}")

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> QLoRASpec:
        if not isinstance(spec, Mapping):
            raise ConfigError(f"fitness: must be a mapping, got {type(spec).__name__}")
        values = dict(spec)  # YAML gives strings and lists: the enums and the tuple are made here
        for old, new in RENAMED.items():
            if old in values:
                if new in values:
                    _fail(old, f"is the old name of fitness.{new}; give only fitness.{new}")
                renamed(f"fitness.{old}", f"fitness.{new}")
                values[new] = values.pop(old)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"fitness.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
        for key, kind in _ENUMS.items():
            if key in values:
                values[key] = _enum(kind, key, values[key])
        if isinstance(values.get("objectives"), list):
            values["objectives"] = tuple(values["objectives"])
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON- and YAML-able values (enums as strings, lists), e.g. to send to the worker."""
        plain = {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in asdict(self).items()}
        return {**plain, "objectives": list(self.objectives)}


def _fail(key: str, problem: str) -> NoReturn:
    raise ConfigError(f"fitness.{key}: {problem}")


RENAMED = {"pack": "cohort"}  # old key: new key (0.2.0: "pack" is sequence packing only)
_ENUMS: dict[str, type[enum.Enum]] = {"device": Device, "lr_scaling": LRScaling}


def _check_objectives(names: Any) -> None:
    if not isinstance(names, tuple):
        _fail("objectives", f"must be a list of objective names, got {names!r}")
    for name in names:
        if not isinstance(name, str) or name not in OBJECTIVES:
            _fail("objectives", f"unknown objective {name!r} (known: {', '.join(OBJECTIVES)})")
    if not names or names[0] != "val_perplexity":
        _fail("objectives", f"must start with val_perplexity, got {list(names)!r}")
    if len(set(names)) != len(names):
        _fail("objectives", f"lists an objective twice: {list(names)!r}")


def _enum(kind: type[enum.Enum], key: str, value: Any) -> enum.Enum:
    try:
        return kind(value)
    except ValueError:
        _fail(key, _not_a_member(kind, value))


def _not_a_member(kind: type[enum.Enum], value: Any) -> str:
    return f"must be one of {[m.value for m in kind]}, got {value!r}"


def _check_int(spec: QLoRASpec, key: str, *, low: int) -> None:
    value = getattr(spec, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        _fail(key, f"must be an integer >= {low}, got {value!r}")


def _check_number(spec: QLoRASpec, key: str, *, low: float, high: float = math.inf, open_ends: bool) -> None:
    value = getattr(spec, key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (low < value < high) if open_ends else (low <= value <= high)
    if not ok:
        _fail(key, f"must be a number in ({low}, {high}), got {value!r}")
