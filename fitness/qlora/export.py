"""The QLoRA fitness's export: a config in the sections Hugging Face classes take.

``training`` loads into ``TrainingArguments``, ``lora`` into ``peft.LoraConfig`` and
``quantization`` into ``BitsAndBytesConfig``; keys that belong to none of them (data
or model settings of the fitness) go to ``other``. The field lists are written out
here so that exporting needs neither transformers nor peft.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fitness.qlora.genes import TARGET_MODULE_SETS

LORA_FIELDS = frozenset(
    {
        "r",
        "lora_alpha",
        "lora_dropout",
        "target_modules",
        "use_rslora",
        "bias",
        "modules_to_save",
        "init_lora_weights",
        "use_dora",
        "layers_to_transform",
        "rank_pattern",
        "alpha_pattern",
        "task_type",
    }
)
QUANTIZATION_FIELDS = frozenset(
    {
        "load_in_4bit",
        "load_in_8bit",
        "bnb_4bit_quant_type",
        "bnb_4bit_compute_dtype",
        "bnb_4bit_use_double_quant",
        "bnb_4bit_quant_storage",
        "llm_int8_skip_modules",
    }
)
TRAINING_FIELDS = frozenset(
    {
        "learning_rate",
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "gradient_accumulation_steps",
        "max_grad_norm",
        "warmup_ratio",
        "warmup_steps",
        "lr_scheduler_type",
        "weight_decay",
        "optim",
        "adam_beta1",
        "adam_beta2",
        "adam_epsilon",
        "max_steps",
        "num_train_epochs",
        "seed",
        "bf16",
        "fp16",
        "gradient_checkpointing",
        "label_smoothing_factor",
        "neftune_noise_alpha",
    }
)
# named target-module sets, resolved for Llama-style layer names ('all-linear' is LoraConfig's own)
NAMED_MODULE_SETS = {name: list(names) for name, names in TARGET_MODULE_SETS.items() if not isinstance(names, str)}


def _transformers_major() -> int | None:
    from importlib import metadata

    try:
        return int(metadata.version("transformers").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return None


def split_sections(config: Mapping[str, Any], transformers_major: int | None = None) -> dict[str, dict[str, Any]]:
    """The config in ``training`` / ``lora`` / ``quantization`` / ``other`` sections.

    transformers 5 dropped ``warmup_ratio``: its ``warmup_steps`` takes the ratio as a
    float in [0, 1). The installed version decides which name the export uses.
    """
    major = transformers_major if transformers_major is not None else _transformers_major()
    if major is not None and major >= 5 and "warmup_ratio" in config:
        config = {("warmup_steps" if k == "warmup_ratio" else k): v for k, v in config.items()}
    sections: dict[str, dict[str, Any]] = {"training": {}, "lora": {}, "quantization": {}, "other": {}}
    for key, value in config.items():
        if key in LORA_FIELDS:
            if key == "target_modules" and isinstance(value, str):
                value = NAMED_MODULE_SETS.get(value, value)  # 'all-linear' is LoraConfig's own
            sections["lora"][key] = value
        elif key in QUANTIZATION_FIELDS:
            sections["quantization"][key] = value
        elif key in TRAINING_FIELDS:
            sections["training"][key] = value
        else:
            sections["other"][key] = value
    if sections["quantization"]:
        sections["quantization"].setdefault("load_in_4bit", True)
    if sections["lora"]:
        sections["lora"].setdefault("task_type", "CAUSAL_LM")
    return {name: values for name, values in sections.items() if values}
