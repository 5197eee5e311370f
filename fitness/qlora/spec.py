"""The ``fitness:`` section of a run config for the QLoRA fitness, validated.

Every key is optional except ``type``; the defaults below are the embedded,
offline run (SmolLM2-135M on the pydoc corpus). Each key's bounds sit beside it
(``evo.config.rule``); bad values raise a one-line :class:`ConfigError` naming the
key, the value and what is accepted, before any worker starts. The layers below
(``base/`` ... ``worker/``) never see this class: each gets its slice of it, built
at the end of the class.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, NoReturn

from evo.config import build, check_fields, rule
from evo.trial import ConfigError, Direction, renamed
from fitness.qlora.base.settings import DEFAULT_MODEL, Device, ModelSettings
from fitness.qlora.data.records import Fields
from fitness.qlora.data.settings import DEFAULT_DATA, DataSettings
from fitness.qlora.genes import LRScaling
from fitness.qlora.memory.footprint import EvalShape
from fitness.qlora.memory.settings import MemorySettings
from fitness.qlora.training.settings import EvalSettings
from fitness.qlora.worker.settings import WorkerSettings

__all__ = ["DEFAULT_DATA", "DEFAULT_MODEL", "OBJECTIVES", "Device", "LRScaling", "QLoRASpec"]

# What ``objectives`` may list: val_perplexity first, then any of the trial's cost measures.
OBJECTIVES = {
    "val_perplexity": Direction.MINIMIZE,
    "peak_memory_mb": Direction.MINIMIZE,  # peak RSS on CPU, peak CUDA allocated on GPU
    "wall_seconds": Direction.MINIMIZE,  # the whole trial, loading a checkpoint and scoring included
    "train_tokens_per_s": Direction.MAXIMIZE,
    "trainable_parameters": Direction.MINIMIZE,
}

_FIELD_NAME = "a non-empty field name"


@dataclass(frozen=True)
class QLoRASpec:
    type: str = field(default="qlora", metadata=rule(help="the QLoRA fitness: a real 4-bit LoRA fine-tune per trial"))
    model: str = field(
        default=DEFAULT_MODEL, metadata=rule(help='"smollm2-135m", a local directory, a .gguf file or a hub id')
    )
    gguf_file: str | None = field(
        default=None,
        metadata=rule(what="a file name", help="the file in `model` (a directory or hub repo) to load from GGUF"),
    )
    data: str = field(
        default=DEFAULT_DATA,
        metadata=rule(help="pydoc, .txt, .jsonl, .json, .parquet, .arrow, .csv, save_to_disk dir, hf:hub/id"),
    )
    validation_data: str | None = field(
        default=None, metadata=rule(help="the same kinds as data: validate on it instead of an automatic split")
    )
    data_split: str | None = field(
        default=None,
        metadata=rule(help='a dataset with splits (save_to_disk, hub): the one to train on; null: "train"'),
    )
    validation_split: str | None = field(
        default=None,
        metadata=rule(help='the split to validate on (of validation_data, else data); null: "validation"'),
    )
    data_subset: str | None = field(default=None, metadata=rule(help="a hub dataset's configuration name"))
    text_field: str = field(
        default="text", metadata=rule(what=_FIELD_NAME, help="the record field (column) read as plain text")
    )
    messages_field: str = field(
        default="messages",
        metadata=rule(what=_FIELD_NAME, help="the field holding a chat conversation (a list of {role, content})"),
    )
    prompt_field: str = field(
        default="prompt", metadata=rule(what=_FIELD_NAME, help="the field holding a prompt (no loss on it)")
    )
    completion_field: str = field(
        default="completion", metadata=rule(what=_FIELD_NAME, help="the field holding the completion the loss is on")
    )
    validation_fraction: float = field(
        default=0.1,
        metadata=rule(gt=0, lt=1, help="of topics / files / lines / records, held out when validation_data is unset"),
    )
    validation_tokens: int = field(
        default=4096,
        metadata=rule(
            ge=1,
            help="cap on the fixed validation set, same for every trial; data giving fewer than 128 "
            "validation tokens, or a training split under one batch of the smallest trial, is refused",
        ),
    )
    eval_seq_length: int = field(
        default=256, metadata=rule(ge=1, help="block length of the validation set (independent of the gene)")
    )
    eval_every: int = field(
        default=0,
        metadata=rule(
            ge=0,
            help="optimizer steps between intermediate validations; 0: only at the end and where early "
            "stopping judges the trial",
        ),
    )
    eval_batch_size: int = field(default=8, metadata=rule(ge=1, help="validation blocks per forward pass"))
    device: Device = field(
        default=Device.AUTO,
        metadata=rule(help="auto: a GPU when there is one, else the CPU; cuda is refused where torch sees no GPU"),
    )
    trial_timeout: float = field(
        default=1800.0,
        metadata=rule(
            gt=0,
            help="seconds a trial may train and validate, from when the started worker takes it (a cohort: "
            "this times its trials still unanswered); past it the worker is killed and the trial fails as timeout",
        ),
    )
    startup_timeout: float = field(
        default=3600.0,
        metadata=rule(
            gt=0,
            help="seconds a worker may take to start (imports, the model loaded, converted or downloaded into "
            "the cache, the data tokenized) before the trials waiting for it fail; not part of trial_timeout",
        ),
    )
    lr_scaling: LRScaling = field(
        default=LRScaling.NONE, metadata=rule(help="rescale the learning_rate gene with the effective batch")
    )
    lr_reference_batch: int = field(
        default=8, metadata=rule(ge=1, help="effective batch at which the learning_rate gene applies unscaled")
    )
    max_worker_rss_growth_mb: float = field(
        default=2048.0, metadata=rule(gt=0, help="worker replaced when its RSS grew more than this")
    )
    trial_memory_limit_mb: float | None = field(
        default=None,
        metadata=rule(
            gt=0,
            help="CPU: a hard cap on the address space a trial may add (past it, its allocations fail); null: none",
        ),
    )
    memory_limit_mb: float | None = field(
        default=None,
        metadata=rule(
            gt=0,
            help="memory a cohort may use, the base included, as estimated before it trains: a trial past it runs "
            "in smaller micro-batches, or fails as oom without training; null: the free CUDA memory, none on a CPU",
        ),
    )
    cache_dir: str | None = field(
        default=None,
        metadata=rule(
            what="a path",
            help="model and token caches, a folder this user can write; null: $EVO_CACHE_DIR, else "
            "$XDG_CACHE_HOME/evo-qlora, else ~/.cache/evo-qlora",
        ),
    )
    objectives: tuple[str, ...] = field(
        default=("val_perplexity",),
        metadata=rule(
            what=f"a list of {', '.join(OBJECTIVES)}; val_perplexity first",
            help="what a trial reports to select on",
        ),
    )
    cohort: int | str = field(
        default="auto",
        metadata=rule(ge=1, help='trials trained at once on the shared base: "auto", or N (1 = one at a time)'),
    )

    def __post_init__(self) -> None:
        if self.cache_dir == "":  # has always meant the default, as null does
            object.__setattr__(self, "cache_dir", None)
        check_fields(self, "fitness")
        # What the rules cannot say: a fixed value, names that are not blank, lists, and "auto" or a number.
        if self.type != "qlora":
            _fail("type", f"must be 'qlora', got {self.type!r}")
        for key in _NOT_BLANK:
            value = getattr(self, key)
            if isinstance(value, str) and not value.strip():
                _fail(key, f"must be a non-blank string{' or null' if key in _OPTIONAL else ''}, got {value!r}")
        _check_objectives(self.objectives)
        if self.cohort != "auto" and (
            isinstance(self.cohort, bool) or not isinstance(self.cohort, int) or self.cohort < 1
        ):
            _fail("cohort", f"must be auto or a whole number >= 1, got {self.cohort!r}")

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> QLoRASpec:
        if isinstance(spec, Mapping):  # YAML gives lists: the tuple is made here; build() makes the enums
            spec = _new_names(spec)
            if isinstance(spec.get("objectives"), list):
                spec = {**spec, "objectives": tuple(spec["objectives"])}
        return build(cls, spec, "fitness")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON- and YAML-able values (enums as strings, lists)."""
        plain = {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in asdict(self).items()}
        return {**plain, "objectives": list(self.objectives)}

    # The slice each layer reads, built here only: nothing in base/, data/, memory/, training/
    # or worker/ sees this class (tests/fitness/qlora/test_layout.py).
    @property
    def model_settings(self) -> ModelSettings:
        return ModelSettings(model=self.model, gguf_file=self.gguf_file, device=self.device, cache_dir=self.cache_dir)

    @property
    def data_settings(self) -> DataSettings:
        return DataSettings(
            data=self.data,
            validation_fraction=self.validation_fraction,
            validation_data=self.validation_data,
            data_split=self.data_split,
            validation_split=self.validation_split,
            data_subset=self.data_subset,
            fields=Fields(self.text_field, self.messages_field, self.prompt_field, self.completion_field),
        )

    @property
    def memory_settings(self) -> MemorySettings:
        return MemorySettings(
            memory_limit_mb=self.memory_limit_mb,
            trial_memory_limit_mb=self.trial_memory_limit_mb,
            cohort=self.cohort,
            objectives=self.objectives,
            evaluation=EvalShape(batch_size=self.eval_batch_size, seq_length=self.eval_seq_length),
        )

    @property
    def eval_settings(self) -> EvalSettings:
        return EvalSettings(
            seq_length=self.eval_seq_length,
            max_tokens=self.validation_tokens,
            batch_size=self.eval_batch_size,
            every=self.eval_every,
        )

    @property
    def worker_settings(self) -> WorkerSettings:
        return WorkerSettings(
            model=self.model_settings,
            data=self.data_settings,
            memory=self.memory_settings,
            evaluation=self.eval_settings,
            lr_scaling=self.lr_scaling,
            lr_reference_batch=self.lr_reference_batch,
            objectives=self.objectives,
            trial_timeout=self.trial_timeout,
            startup_timeout=self.startup_timeout,
            max_worker_rss_growth_mb=self.max_worker_rss_growth_mb,
        )


RENAMED = {"pack": "cohort"}  # old key: new key (0.2.0: "pack" is sequence packing only)
# Names and paths: the rules refuse "", and "  " names nothing either.
_OPTIONAL = ("validation_data", "data_split", "validation_split", "data_subset")
_NOT_BLANK = ("model", "data", "text_field", "messages_field", "prompt_field", "completion_field", *_OPTIONAL)


def _fail(key: str, problem: str) -> NoReturn:
    raise ConfigError(f"fitness.{key}: {problem}")


def _new_names(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` with each old key under its new name, said once (a warning); both given: an error."""
    values = dict(spec)
    for old, new in RENAMED.items():
        if old in values:
            if new in values:
                _fail(old, f"is the old name of fitness.{new}; give only fitness.{new}")
            renamed(f"fitness.{old}", f"fitness.{new}")
            values[new] = values.pop(old)
    return values


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
