"""The genes a QLoRA trial understands, with the QLoRA-paper-style baseline as defaults.

Names are the Hugging Face field names they set (``LoraConfig``, ``TrainingArguments``,
``BitsAndBytesConfig``). A gene the fitness doesn't know is ignored and reported; a
known gene with an unusable value is a trial failure, not a config error, because
the search produced it.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from evo.trial import GeneDecl, ValueKind, why_refused

TARGET_MODULE_SETS: dict[str, tuple[str, ...] | str] = {
    "attention": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mlp": ("gate_proj", "up_proj", "down_proj"),
    "all-linear": "all-linear",  # peft picks every Linear except the output head
}


class LRScaling(str, enum.Enum):
    """How the learning-rate gene is rescaled with the effective batch size (``fitness.lr_scaling``)."""

    NONE = "none"
    LINEAR = "linear"  # lr * batch / reference
    SQRT = "sqrt"  # lr * sqrt(batch / reference)


class Optim(str, enum.Enum):
    ADAMW_TORCH = "adamw_torch"
    ADAFACTOR = "adafactor"
    ADAMW_BNB_8BIT = "adamw_bnb_8bit"  # works on CPU with bitsandbytes >= 0.49
    PAGED_ADAMW_8BIT = "paged_adamw_8bit"  # paging falls back to plain 8-bit on CPU


class Schedule(str, enum.Enum):
    CONSTANT = "constant"
    CONSTANT_WITH_WARMUP = "constant_with_warmup"
    LINEAR = "linear"
    COSINE = "cosine"


class QuantType(str, enum.Enum):
    NF4 = "nf4"
    FP4 = "fp4"


class ComputeDtype(str, enum.Enum):
    AUTO = "auto"  # bfloat16 where the hardware has it, float32 otherwise
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"
    FLOAT32 = "float32"


def _gene(help: str, **accepts: Any) -> dict[str, Any]:
    """Field metadata: what the gene sets and the values it accepts (GeneDecl's fields)."""
    return {"help": help, **accepts}


@dataclass(frozen=True)
class QuantSettings:
    """What the resident base model was quantized with; a change means a reload."""

    bnb_4bit_quant_type: QuantType = field(default=QuantType.NF4, metadata=_gene("4-bit data type of the base"))
    bnb_4bit_compute_dtype: ComputeDtype = field(
        default=ComputeDtype.AUTO, metadata=_gene("dtype of the 4-bit matmuls")
    )
    bnb_4bit_use_double_quant: bool = field(default=True, metadata=_gene("quantize the quantization constants too"))


@dataclass(frozen=True)
class TrialConfig:
    """A trial's genes, typed; each field's metadata says what it accepts (see GENES)."""

    learning_rate: float = field(  # as applied (after lr scaling)
        default=2e-4, metadata=_gene("peak learning rate", low=0.0, low_open=True)
    )
    r: int = field(default=64, metadata=_gene("LoRA rank", low=1))
    lora_alpha: float = field(default=16, metadata=_gene("LoRA scale: alpha / r", low=0.0, low_open=True))
    lora_dropout: float = field(
        default=0.1, metadata=_gene("dropout on the LoRA input", low=0.0, high=1.0, high_open=True)
    )
    target_modules: str | tuple[str, ...] = field(
        default="attention", metadata=_gene("layers given an adapter", kind=ValueKind.MODULE_LIST)
    )
    use_rslora: bool = field(default=False, metadata=_gene("rank-stabilised scale: alpha / sqrt(r)"))
    optim: Optim = field(default=Optim.ADAMW_TORCH, metadata=_gene("optimizer"))
    lr_scheduler_type: Schedule = field(default=Schedule.CONSTANT, metadata=_gene("learning-rate schedule"))
    warmup_ratio: float = field(default=0.0, metadata=_gene("fraction of the budget warming up", low=0.0, high=1.0))
    weight_decay: float = field(default=0.0, metadata=_gene("decoupled weight decay", low=0.0))
    max_grad_norm: float = field(  # the QLoRA paper's value
        default=0.3, metadata=_gene("gradient clipping norm; <= 0 disables clipping")
    )
    per_device_train_batch_size: int = field(default=4, metadata=_gene("sequences per micro-batch", low=1))
    gradient_accumulation_steps: int = field(default=1, metadata=_gene("micro-batches per optimizer step", low=1))
    max_seq_length: int = field(default=128, metadata=_gene("training sequence length in tokens", low=2))
    gradient_checkpointing: bool = field(  # less memory, ~30% slower
        default=False, metadata=_gene("recompute activations in the backward pass")
    )
    quant: QuantSettings = QuantSettings()

    @property
    def effective_batch(self) -> int:
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    @property
    def tokens_per_step(self) -> int:
        return self.effective_batch * self.max_seq_length

    def lora_target_modules(self) -> list[str] | str:
        if isinstance(self.target_modules, tuple):
            return list(self.target_modules)
        named = TARGET_MODULE_SETS[self.target_modules]
        return named if isinstance(named, str) else list(named)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "quant":
                out.update({q.name: _plain(getattr(value, q.name)) for q in fields(value)})
            else:
                out[f.name] = _plain(value)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def _declare(holder: Any) -> dict[str, GeneDecl]:
    """The GeneDecl of every gene field of a settings dataclass, from its default and metadata."""
    out = {}
    for f in fields(holder):
        if not f.metadata:
            continue
        default = getattr(holder, f.name)
        accepts = dict(f.metadata)
        kind = accepts.pop("kind", None)
        if kind is None and isinstance(default, enum.Enum):
            kind, accepts["choices"] = ValueKind.CATEGORICAL, tuple(m.value for m in type(default))
        elif kind is None:
            kind = {bool: ValueKind.BOOL, int: ValueKind.INT}.get(type(default), ValueKind.FLOAT)
            kind = ValueKind.FLOAT if f.type in ("float", float) else kind  # lora_alpha: an int default
        elif kind is ValueKind.MODULE_LIST:
            accepts["choices"] = tuple(TARGET_MODULE_SETS)
        out[f.name] = GeneDecl(f.name, kind, _plain(default), **accepts)
    return out


# What a QLoRA trial reads and accepts, derived from the dataclasses parse_genes fills.
GENES: Mapping[str, GeneDecl] = MappingProxyType({**_declare(TrialConfig()), **_declare(QuantSettings())})
_QUANT_GENES = {f.name for f in fields(QuantSettings)}
_ENUMS = {
    name: type(getattr(holder, name))
    for holder in (TrialConfig(), QuantSettings())
    for name in GENES
    if isinstance(getattr(holder, name, None), enum.Enum)
}

# Genes a checkpoint fixes: they shape the adapter's tensors or the optimizer's state, scale
# the adapter's output, or define the base it was trained on. The rest may change on resume.
STRUCTURAL_GENES = frozenset({"r", "lora_alpha", "use_rslora", "target_modules", "optim", *_QUANT_GENES})


def genes_for_model(context_length: int | None, linear_modules: tuple[str, ...]) -> Mapping[str, GeneDecl]:
    """GENES narrowed to one base model, so that what it lacks is refused before a run starts.

    ``max_seq_length`` goes up to ``context_length`` tokens; ``target_modules`` offers the
    named sets whose modules the model all has and takes lists of ``linear_modules`` (the
    leaf names LoRA can target, in the model's order). None or () leaves a gene as in GENES.
    Where the model cannot take GENES' default, the declared default is one it can take
    (the fitness applies it to trials without the key).
    """
    genes = dict(GENES)
    seq = GENES["max_seq_length"]
    if context_length is not None and context_length >= (seq.low or 0):
        genes["max_seq_length"] = replace(seq, high=context_length, default=min(seq.default, context_length))
    if linear_modules:
        sets = tuple(
            name
            for name, modules in TARGET_MODULE_SETS.items()
            if isinstance(modules, str) or set(modules) <= set(linear_modules)
        )
        modules = GENES["target_modules"]
        default = modules.default if modules.default in sets else "all-linear"
        genes["target_modules"] = replace(modules, choices=sets, default=default, names=linear_modules)
    return MappingProxyType(genes)


def parse_genes(
    config: Mapping[str, Any], *, lr_scaling: LRScaling, lr_reference_batch: int
) -> tuple[TrialConfig, list[str], float]:
    """Turn ``trial.config`` into a TrialConfig.

    Returns the config (learning rate already scaled), the ignored keys, and the
    learning-rate gene as given. Raises ValueError naming the gene for unusable values.
    A non-finite learning rate is let through on purpose: it is a diverged trial.
    """
    converted = {name: _convert(GENES[name], value) for name, value in config.items() if name in GENES}
    ignored = sorted(k for k in config if k not in GENES)
    quant = {k: v for k, v in converted.items() if k in _QUANT_GENES}
    train = {k: v for k, v in converted.items() if k not in _QUANT_GENES}
    cfg = replace(TrialConfig(), **train, quant=replace(QuantSettings(), **quant))
    gene_lr = cfg.learning_rate
    ratio = cfg.effective_batch / lr_reference_batch
    factor = {LRScaling.NONE: 1.0, LRScaling.LINEAR: ratio, LRScaling.SQRT: math.sqrt(ratio)}[lr_scaling]
    return replace(cfg, learning_rate=gene_lr * factor), ignored, gene_lr


def _convert(decl: GeneDecl, value: Any) -> Any:
    """``value`` as TrialConfig holds it; a ValueError naming the gene when GENES refuses it."""
    plain = _coerce(decl, value)
    problem = why_refused(decl, plain)
    diverges = decl.name == "learning_rate" and isinstance(plain, float) and not math.isfinite(plain)
    if problem is not None and not diverges:
        raise ValueError(f"gene {decl.name}={value!r}: {problem}")
    if decl.name in _ENUMS:
        return _ENUMS[decl.name](plain)
    return tuple(plain) if isinstance(plain, list) else plain


def _coerce(decl: GeneDecl, value: Any) -> Any:
    """Numbers from strings (YAML reads ``1e-4`` as one) and integral floats, module names as
    strings; what cannot be converted is returned as it is, for why_refused to refuse."""
    try:
        if isinstance(value, bool) or decl.kind in (ValueKind.BOOL, ValueKind.CATEGORICAL):
            return value
        if decl.kind is ValueKind.MODULE_LIST:
            return [str(v) for v in value] if isinstance(value, (list, tuple)) else value
        if decl.kind is ValueKind.INT:
            return value if isinstance(value, float) and not value.is_integer() else int(value)
        if decl.name == "lora_alpha" and isinstance(value, int):  # LoraConfig takes either; keep a YAML int
            return value
        return float(value)
    except (TypeError, ValueError):
        return value
