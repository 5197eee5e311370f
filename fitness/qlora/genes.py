"""The genes a QLoRA trial understands, with the QLoRA-paper-style baseline as defaults.

Names are the Hugging Face field names they set (``LoraConfig``, ``TrainingArguments``,
``BitsAndBytesConfig``). A gene the fitness doesn't know is ignored and reported; a
known gene with an unusable value is a trial failure, not a config error, because
the search produced it.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

from fitness.qlora.spec import LRScaling

TARGET_MODULE_SETS: dict[str, tuple[str, ...] | str] = {
    "attention": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mlp": ("gate_proj", "up_proj", "down_proj"),
    "all-linear": "all-linear",  # peft picks every Linear except the output head
}


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


@dataclass(frozen=True)
class QuantSettings:
    """What the resident base model was quantized with; a change means a reload."""

    bnb_4bit_quant_type: QuantType = QuantType.NF4
    bnb_4bit_compute_dtype: ComputeDtype = ComputeDtype.AUTO
    bnb_4bit_use_double_quant: bool = True


@dataclass(frozen=True)
class TrialConfig:
    learning_rate: float = 2e-4  # as applied (after lr scaling)
    r: int = 64
    lora_alpha: float = 16
    lora_dropout: float = 0.1
    target_modules: str | tuple[str, ...] = "attention"
    use_rslora: bool = False
    optim: Optim = Optim.ADAMW_TORCH
    lr_scheduler_type: Schedule = Schedule.CONSTANT
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 0.3  # the QLoRA paper's value; <= 0 disables clipping
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_seq_length: int = 128
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% slower
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


_QUANT_GENES = {f.name for f in fields(QuantSettings)}
_TRAIN_GENES = {f.name for f in fields(TrialConfig)} - {"quant"}

# Genes a checkpoint fixes: they shape the adapter's tensors or the optimizer's state, scale
# the adapter's output, or define the base it was trained on. The rest may change on resume.
STRUCTURAL_GENES = frozenset({"r", "lora_alpha", "use_rslora", "target_modules", "optim", *_QUANT_GENES})


def parse_genes(
    config: Mapping[str, Any], *, lr_scaling: LRScaling, lr_reference_batch: int
) -> tuple[TrialConfig, list[str], float]:
    """Turn ``trial.config`` into a TrialConfig.

    Returns the config (learning rate already scaled), the ignored keys, and the
    learning-rate gene as given. Raises ValueError naming the gene for unusable values.
    A non-finite learning rate is let through on purpose: it is a diverged trial.
    """
    train = {k: v for k, v in config.items() if k in _TRAIN_GENES}
    quant = {k: v for k, v in config.items() if k in _QUANT_GENES}
    ignored = sorted(k for k in config if k not in _TRAIN_GENES and k not in _QUANT_GENES)
    cfg = TrialConfig()
    converted = {name: _convert(name, value, getattr(cfg, name)) for name, value in train.items()}
    quant_cfg = QuantSettings()
    quant_converted = {name: _convert(name, value, getattr(quant_cfg, name)) for name, value in quant.items()}
    cfg = replace(cfg, **converted, quant=replace(quant_cfg, **quant_converted))
    _check_ranges(cfg)
    gene_lr = cfg.learning_rate
    ratio = cfg.effective_batch / lr_reference_batch
    factor = {LRScaling.NONE: 1.0, LRScaling.LINEAR: ratio, LRScaling.SQRT: math.sqrt(ratio)}[lr_scaling]
    return replace(cfg, learning_rate=gene_lr * factor), ignored, gene_lr


def _convert(name: str, value: Any, default: Any) -> Any:
    try:
        if name == "target_modules":
            if isinstance(value, str):
                if value not in TARGET_MODULE_SETS:
                    raise ValueError(f"not one of {sorted(TARGET_MODULE_SETS)} or a list of module names")
                return value
            names = tuple(str(v) for v in value)
            if not names:
                raise ValueError("empty list")
            return names
        if isinstance(default, enum.Enum):
            return type(default)(value)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError("not a bool")
            return value
        if name == "lora_alpha":  # LoraConfig takes either; keep a YAML int an int in the records
            return value if isinstance(value, int) and not isinstance(value, bool) else float(value)
        if isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("not an integer")
            return int(value)
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"gene {name}={value!r}: {exc}") from None


def _check_ranges(cfg: TrialConfig) -> None:
    for name in ("r", "per_device_train_batch_size", "gradient_accumulation_steps"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"gene {name}={getattr(cfg, name)!r}: must be >= 1")
    if cfg.max_seq_length < 2:
        raise ValueError(f"gene max_seq_length={cfg.max_seq_length!r}: must be >= 2")
    if not 0.0 <= cfg.lora_dropout < 1.0:
        raise ValueError(f"gene lora_dropout={cfg.lora_dropout!r}: must be in [0, 1)")
    if not 0.0 <= cfg.warmup_ratio <= 1.0:
        raise ValueError(f"gene warmup_ratio={cfg.warmup_ratio!r}: must be in [0, 1]")


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value
