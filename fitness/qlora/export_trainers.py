"""The best config as the file another trainer takes: TRL, LLaMA-Factory or axolotl. No torch here.

Each format starts from the Hugging Face sections (``export.split_sections``) and renames
into the trainer's own keys, checked against each tool's config parser (tests/fitness/
qlora/test_export_trainers.py). The model is the one the trials trained (a GGUF model's
dequantized copy); the dataset lines are placeholders to fill in; the best trial's adapter
stays where it is and its path is written in every format (a comment where a key would
make the trainer start from it instead of from scratch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evo.trial import ConfigError
from fitness.qlora.export import split_sections

FILL_IN = "FILL_IN"  # a dataset line left for the user


@dataclass(frozen=True)
class ExportRequest:
    """What a trainer file is made of; ``data_format`` as the run recorded it (chat, text, ...)."""

    config: Mapping[str, Any]  # the trial's applied config
    spec: Mapping[str, Any]  # the run's fitness section
    adapter_path: str | None = None
    data_format: str | None = None
    notes: tuple[str, ...] = ()  # header comment lines: which run, trial and values


@dataclass
class _File:
    """YAML blocks, each under a comment, with end-of-line comments on chosen keys."""

    blocks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    remarks: dict[str, str] = field(default_factory=dict)  # key -> comment after its line
    header: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"# {line}" if line else "#" for line in self.header]
        for title, values in self.blocks:
            if not values:
                continue
            lines += ["", f"### {title}"]
            for line in yaml.safe_dump(values, sort_keys=False, width=1000).splitlines():
                key = line.split(":", 1)[0]
                lines.append(
                    f"{line}  # {self.remarks[key]}" if key in self.remarks and not line[0].isspace() else line
                )
        return "\n".join(lines) + "\n"


def trainer_yaml(fmt: str, request: ExportRequest) -> str:
    """The YAML text of ``fmt`` (trl, llamafactory, axolotl) for the request."""
    build = FORMATS.get(fmt)
    if build is None:
        raise ConfigError(f"--format: unknown format {fmt!r} (known: hf, {', '.join(FORMATS)})")
    return build(request).text()


def _hf(request: ExportRequest) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    sections = split_sections(request.config)
    quant = sections.get("quantization", {"load_in_4bit": True})
    return sections.get("training", {}), sections.get("lora", {}), quant, sections.get("other", {})


def _trl(request: ExportRequest) -> _File:
    training, lora, quant, other = _hf(request)
    sft = dict(training)
    if "max_seq_length" in other:
        sft["max_length"] = other["max_seq_length"]
    sft["packing"] = True  # the trials trained on packed blocks
    if request.data_format == "chat":
        sft["assistant_only_loss"] = True  # as the trials were scored
    elif request.data_format == "prompt_completion":
        sft["completion_only_loss"] = True
    out = _File(header=[*request.notes, *_header("TRL", request), "Load each section with its class, e.g.:"])
    out.header += [
        '  SFTConfig(output_dir="out", **cfg["sft_config"]), LoraConfig(**cfg["lora_config"]),',
        '  BitsAndBytesConfig(**cfg["quantization_config"]) for from_pretrained(model_name_or_path, ...)',
    ]
    if sft.get("assistant_only_loss"):
        out.header.append("assistant_only_loss needs a chat template with {% generation %} markers (see TRL's docs)")
    model, model_notes = model_location(request.spec)
    out.header += model_notes
    top = {"model_name_or_path": model}
    if request.adapter_path:
        top["adapter_path"] = request.adapter_path
    out.blocks += [("model", top), ("trl.SFTConfig", {"sft_config": sft})]
    out.blocks += [
        ("peft.LoraConfig", {"lora_config": lora}),
        ("transformers.BitsAndBytesConfig", {"quantization_config": quant}),
    ]
    return out


def _llamafactory(request: ExportRequest) -> _File:
    training, lora, quant, other = _hf(request)
    model, model_notes = model_location(request.spec)
    out = _File(
        header=[*request.notes, *_header("LLaMA-Factory: llamafactory-cli train THIS_FILE", request), *model_notes]
    )
    if request.adapter_path:
        out.header.append(
            f"to start from the best trial's adapter instead: adapter_name_or_path: {request.adapter_path}"
        )
    out.blocks.append(("model", {"model_name_or_path": model, **_only(
        quantization_bit=4,
        quantization_method="bnb",
        quantization_type=quant.get("bnb_4bit_quant_type"),
        double_quantization=quant.get("bnb_4bit_use_double_quant"),
    )}))  # fmt: skip
    text = request.data_format == "text"
    method = {"stage": "pt" if text else "sft", "do_train": True, "finetuning_type": "lora"}
    targets = lora.get("target_modules")
    method.update(_only(
        lora_rank=lora.get("r"),
        lora_alpha=_int_alpha(lora.get("lora_alpha"), out, "lora_alpha"),
        lora_dropout=lora.get("lora_dropout"),
        lora_target="all" if targets == "all-linear" else ",".join(targets) if isinstance(targets, list) else targets,
        use_rslora=lora.get("use_rslora"),
    ))  # fmt: skip
    out.blocks.append(("method", method))
    dataset = {
        "dataset": FILL_IN,
        "template": FILL_IN,
        **_only(cutoff_len=other.get("max_seq_length")),
        "packing": True,
    }
    out.remarks.update(dataset="your dataset's name in data/dataset_info.json", template="the model's template name")
    out.blocks += [("dataset", dataset), ("output", {"output_dir": "saves/evo-best"})]
    train = {k: v for k, v in training.items() if k != "gradient_checkpointing"}
    if training.get("gradient_checkpointing") is False:
        train["disable_gradient_checkpointing"] = True  # LLaMA-Factory's default is on
    out.blocks.append(("train", {**train, **_precision(quant)}))
    return out


def _axolotl(request: ExportRequest) -> _File:
    training, lora, quant, other = _hf(request)
    model, model_notes = model_location(request.spec)
    out = _File(header=[*request.notes, *_header("axolotl: axolotl train THIS_FILE", request), *model_notes])
    if request.adapter_path:
        out.header.append(f"to start from the best trial's adapter instead: lora_model_dir: {request.adapter_path}")
    bnb = _only(
        bnb_4bit_quant_type=quant.get("bnb_4bit_quant_type"),
        bnb_4bit_use_double_quant=quant.get("bnb_4bit_use_double_quant"),
    )
    out.blocks.append(
        (
            "model",
            {"base_model": model, "load_in_4bit": True, "adapter": "qlora", **_only(bnb_config_kwargs=bnb or None)},
        )
    )
    targets = lora.get("target_modules")
    out.blocks.append(("lora", _only(
        lora_r=lora.get("r"),
        lora_alpha=_int_alpha(lora.get("lora_alpha"), out, "lora_alpha"),
        lora_dropout=lora.get("lora_dropout"),
        lora_target_linear=True if targets == "all-linear" else None,
        lora_target_modules=targets if isinstance(targets, list) else None,
        peft_use_rslora=lora.get("use_rslora"),
    )))  # fmt: skip
    kind = {"chat": "chat_template", "text": "completion"}.get(request.data_format or "", FILL_IN)
    dataset: dict[str, Any] = {"path": FILL_IN, "type": kind}
    if kind == "chat_template":
        dataset.update(field_messages=_spec(request, "messages_field", "messages"), roles_to_train=["assistant"])
    elif kind == "completion":
        dataset["field"] = _spec(request, "text_field", "text")
    out.blocks.append(
        (
            "dataset",
            {
                "datasets": [dataset],
                "train_on_inputs": False,
                **_only(sequence_len=other.get("max_seq_length")),
                "sample_packing": True,
            },
        )
    )
    out.remarks.update(datasets="fill in path (and type, if FILL_IN): a local file or hub id")
    warmup = training.get("warmup_steps", training.get("warmup_ratio"))  # axolotl reads its own warmup_ratio
    out.blocks += [("output", {"output_dir": "./outputs/evo-best"})]
    out.blocks.append(("training", {**_only(
        micro_batch_size=training.get("per_device_train_batch_size"),
        gradient_accumulation_steps=training.get("gradient_accumulation_steps"),
        learning_rate=training.get("learning_rate"),
        optimizer=training.get("optim"),
        lr_scheduler=training.get("lr_scheduler_type"),
        warmup_ratio=warmup,
        weight_decay=training.get("weight_decay"),
        max_grad_norm=training.get("max_grad_norm"),
        gradient_checkpointing=training.get("gradient_checkpointing"),
    ), **_precision(quant)}))  # fmt: skip
    return out


FORMATS: dict[str, Callable[[ExportRequest], _File]] = {"trl": _trl, "llamafactory": _llamafactory, "axolotl": _axolotl}


def model_location(spec: Mapping[str, Any]) -> tuple[str, list[str]]:
    """What the trainer loads, and notes on it: a GGUF model's dequantized copy is what the
    trials trained on (the trainers don't load GGUF for training)."""
    from fitness.qlora.base.source import converted_gguf_dir, default_cache_root, resolve_model
    from fitness.qlora.spec import DEFAULT_MODEL, QLoRASpec

    try:
        parsed = QLoRASpec.from_dict(spec)
        source = resolve_model(parsed.model_settings)
    except ConfigError as exc:  # moved or never here: the name as the run had it
        return str(spec.get("model", DEFAULT_MODEL)), [f"model not found here ({exc}); set model_name_or_path"]
    notes = []
    if parsed.model == DEFAULT_MODEL:
        notes.append("smollm2-135m is HuggingFaceTB/SmolLM2-135M-Instruct (the trials used its GGUF Q4_1, dequantized)")
    if source.gguf_file is None:
        return source.name_or_path, notes
    converted = converted_gguf_dir(source, default_cache_root(parsed.model_settings))
    if (converted / "config.json").is_file():
        return str(converted), notes
    return str(Path(source.name_or_path) / source.gguf_file), [*notes, "a GGUF file: convert it to safetensors first"]


def _header(tool: str, request: ExportRequest) -> list[str]:
    lines = [
        f"For {tool}.",
        "Tuned under the run's budget per trial: set the training length (epochs/steps) for your data.",
    ]
    if request.adapter_path:
        lines.append(f"adapter of the best trial: {request.adapter_path}")
    return lines


def _precision(quant: Mapping[str, Any]) -> dict[str, bool]:
    """The 4-bit compute dtype as the trainers take it: their mixed-precision flag."""
    dtype = quant.get("bnb_4bit_compute_dtype")
    return {"bf16": True} if dtype == "bfloat16" else {"fp16": True} if dtype == "float16" else {}


def _int_alpha(alpha: Any, out: _File, key: str) -> Any:
    """LLaMA-Factory and axolotl take an integer alpha; a fractional one is rounded, and said so."""
    if isinstance(alpha, float) and not alpha.is_integer():
        out.remarks[key] = f"tuned {alpha:g}, rounded: this trainer takes an integer"
        return round(alpha)
    return int(alpha) if isinstance(alpha, float) else alpha


def _spec(request: ExportRequest, key: str, default: str) -> str:
    value = request.spec.get(key)
    return value if isinstance(value, str) else default


def _only(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
