"""The QLoRA fitness's export: a config in the sections Hugging Face classes take.

``training`` loads into ``TrainingArguments``, ``lora`` into ``peft.LoraConfig``,
``quantization`` into ``BitsAndBytesConfig`` and ``tokenizer`` into
``AutoTokenizer.from_pretrained`` (``max_seq_length`` as its ``model_max_length``); keys
that belong to none of them (another fitness's) go to ``other``. The training section
states the precision the trial trained in. The field lists are written out here so that
exporting needs neither transformers nor peft.
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
        "activation_checkpointing",
        "label_smoothing_factor",
        "neftune_noise_alpha",
    }
)
# named target-module sets, resolved for Llama-style layer names ('all-linear' is LoraConfig's own)
NAMED_MODULE_SETS = {name: list(names) for name, names in TARGET_MODULE_SETS.items() if not isinstance(names, str)}


def _transformers_version() -> tuple[int, int] | None:
    from importlib import metadata

    try:
        major, minor = (metadata.version("transformers").split(".") + ["0"])[:2]
        return int(major), int(minor)
    except (metadata.PackageNotFoundError, ValueError):
        return None


def split_sections(config: Mapping[str, Any], transformers_major: int | None = None) -> dict[str, dict[str, Any]]:
    """The config in ``training`` / ``lora`` / ``quantization`` / ``tokenizer`` / ``other`` sections.

    transformers 5 dropped ``warmup_ratio``: its ``warmup_steps`` takes the ratio as a
    float in [0, 1); 5.23 renamed ``gradient_checkpointing`` ``activation_checkpointing``.
    The installed version decides the names, unless ``transformers_major`` is given.
    """
    version = (transformers_major, 0) if transformers_major is not None else _transformers_version()
    if version is not None and version[0] >= 5 and "warmup_ratio" in config:
        config = {("warmup_steps" if k == "warmup_ratio" else k): v for k, v in config.items()}
    if version is not None and version >= (5, 23) and "gradient_checkpointing" in config:
        config = {("activation_checkpointing" if k == "gradient_checkpointing" else k): v for k, v in config.items()}
    sections: dict[str, dict[str, Any]] = {"training": {}, "lora": {}, "quantization": {}, "tokenizer": {}, "other": {}}
    if config.get("bnb_4bit_compute_dtype") in ("bfloat16", "float16", "float32"):  # the dtype the trial trained in
        sections["training"].update(bf16=config["bnb_4bit_compute_dtype"] == "bfloat16")
        sections["training"].update(fp16=config["bnb_4bit_compute_dtype"] == "float16")
    for key, value in config.items():
        if key in LORA_FIELDS:
            if key == "target_modules" and isinstance(value, str):
                value = NAMED_MODULE_SETS.get(value, value)  # 'all-linear' is LoraConfig's own
            sections["lora"][key] = value
        elif key in QUANTIZATION_FIELDS:
            sections["quantization"][key] = value
        elif key in TRAINING_FIELDS:
            sections["training"][key] = value
        elif key == "max_seq_length":  # the trials' block length: what the tokenizer truncates to
            sections["tokenizer"]["model_max_length"] = value
        else:
            sections["other"][key] = value
    if sections["quantization"]:
        sections["quantization"].setdefault("load_in_4bit", True)
    if sections["lora"]:
        sections["lora"].setdefault("task_type", "CAUSAL_LM")
    return {name: values for name, values in sections.items() if values}
