"""The best trial as files the trainers run as written: hf, trl, llamafactory, axolotl. No torch here.

Each format starts from the Hugging Face sections (``sections.split_sections``), takes what
the run recorded (``facts``), and renames into the trainer's own keys. Every file states the
precision the trial trained in, its warmup as an integer, the training length, the model the
trials loaded (a GGUF model's dequantized copy) and the dataset the trials trained on,
written beside it in the trainer's own dataset form (``dataset``). The best trial's adapter
stays where it is; its path is written in every format (a comment where a key would make
the trainer start from it instead of from scratch). tests/fitness/qlora/export/test_real_trainers.py
runs each file with the trainer's own CLI or API.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evo.trial import ConfigError
from fitness.qlora.export import facts
from fitness.qlora.export.dataset import Dataset, header, training_documents
from fitness.qlora.export.facts import ExportRequest
from fitness.qlora.export.sections import split_sections

OUTPUT_DIR = "outputs/evo-best"
LLAMAFACTORY_DATASET = "evo_best"  # the entry's name in dataset_info.json


@dataclass
class Export:
    """The YAML (blocks, each under a comment; remarks after chosen keys) and the files written beside it."""

    blocks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    remarks: dict[str, str] = field(default_factory=dict)  # key -> comment after its line
    header: list[str] = field(default_factory=list)
    beside: dict[Path, str] = field(default_factory=dict)  # absolute path -> text

    def text(self) -> str:
        lines = [f"# {line}" if line else "#" for line in self.header]
        for title, values in self.blocks:
            if not values:
                continue
            lines += ["", f"### {title}"]
            for line in yaml.safe_dump(values, sort_keys=False, width=1000, allow_unicode=True).splitlines():
                key = line.split(":", 1)[0]
                lines.append(
                    f"{line}  # {self.remarks[key]}" if key in self.remarks and not line[0].isspace() else line
                )
        return "\n".join(lines) + "\n"


def trainer_export(fmt: str, request: ExportRequest) -> Export:
    """The file ``fmt`` (hf, trl, llamafactory, axolotl) for the request, with the files beside it."""
    build = FORMATS.get(fmt)
    if build is None:
        raise ConfigError(f"--format: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    return build(request, training_documents(request))


@dataclass(frozen=True)
class _Parts:
    training: dict[str, Any]
    lora: dict[str, Any]
    quant: dict[str, Any]
    max_seq_length: int | None
    length: facts.Length
    model: str
    model_notes: list[str]


def _parts(request: ExportRequest) -> _Parts:
    sections = split_sections(request.config, transformers_major=5)  # warmup_ratio renamed below, not by version
    training = {k: v for k, v in sections.get("training", {}).items() if k not in ("warmup_steps", "warmup_ratio")}
    training.pop("gradient_checkpointing", None)
    training.update(facts.checkpointing(request.config, request.transformers))
    training.update(facts.precision(request.config))
    if training["bf16"] and request.device == "cpu":  # transformers refuses bf16 without a GPU unless told
        training["use_cpu"] = True
    model, notes = facts.model_location(request.spec)
    quant = {"load_in_4bit": True, **sections.get("quantization", {})}
    quant["bnb_4bit_compute_dtype"] = facts.compute_dtype(request.config)
    seq = request.config.get("max_seq_length")
    return _Parts(training, sections.get("lora", {}), quant, seq, facts.length(request), model, notes)


def _schedule(parts: _Parts) -> dict[str, Any]:
    """The length and warmup as TrainingArguments takes them."""
    length = parts.length
    out: dict[str, Any] = {"max_steps": length.max_steps} if length.max_steps else {"num_train_epochs": length.epochs}
    if length.warmup_ratio is not None:
        out["warmup_ratio"] = length.warmup_ratio
    else:
        out["warmup_steps"] = length.warmup_steps
    return out


def _header(tool: str, request: ExportRequest, parts: _Parts, data: Dataset) -> list[str]:
    lines = [*request.notes, f"For {tool}.", parts.length.note, header(data), *parts.model_notes]
    dtype = facts.compute_dtype(request.config)
    lines.append(
        f"precision: the trial trained in {dtype}"
        + (" on a CPU (use_cpu: remove it on a GPU)" if parts.training.get("use_cpu") else "")
    )
    if request.adapter_path:
        lines.append(f"adapter of the best trial: {request.adapter_path}")
    return lines


def _data_file(data: Dataset) -> dict[Path, str]:
    return {data.file: data.text}


def _hf(request: ExportRequest, data: Dataset) -> Export:
    parts = _parts(request)
    out = Export(
        header=_header("transformers' Trainer (each section is what its class or function takes)", request, parts, data)
    )
    out.header += [
        "  model = AutoModelForCausalLM.from_pretrained(**cfg['model'], quantization_config=BitsAndBytesConfig(**cfg['quantization']))",
        "  model = get_peft_model(prepare_model_for_kbit_training(model, use_gradient_checkpointing=<as training says>), LoraConfig(**cfg['lora']))",
        "  tokenizer = AutoTokenizer.from_pretrained(**cfg['tokenizer']); dataset = load_dataset(**cfg['dataset'])",
        "  Trainer(model, TrainingArguments(**cfg['training']), train_dataset=<dataset tokenized>, ...).train()",
        "The trials trained on blocks of model_max_length tokens (sequence packing)"
        + (", with the loss on assistant turns only (the model's chat template)" if data.kind == "chat" else ""),
    ]
    dtype = facts.compute_dtype(request.config)
    out.blocks += [
        ("AutoModelForCausalLM.from_pretrained", {"model": {"pretrained_model_name_or_path": parts.model, "dtype": dtype}}),
        ("AutoTokenizer.from_pretrained", {"tokenizer": {"pretrained_model_name_or_path": parts.model, **_only(model_max_length=parts.max_seq_length)}}),
        ("datasets.load_dataset", {"dataset": {"path": "json", "data_files": str(data.file), "split": "train"}}),
        ("TrainingArguments", {"training": {"output_dir": OUTPUT_DIR, **parts.training, **_schedule(parts)}}),
        ("peft.LoraConfig", {"lora": parts.lora}),
        ("BitsAndBytesConfig", {"quantization": parts.quant}),
    ]  # fmt: skip
    if request.adapter_path:
        out.blocks.append(
            ("the best trial's adapter (PeftModel.from_pretrained)", {"adapter_path": request.adapter_path})
        )
    out.beside.update(_data_file(data))
    return out


def _trl(request: ExportRequest, data: Dataset) -> Export:
    from fitness.qlora.export.templates import trl_chat_template

    parts = _parts(request)
    out = Export(header=_header(f"TRL: trl sft --config {_name(request)}", request, parts, data))
    lora, quant = parts.lora, parts.quant
    model = {"model_name_or_path": parts.model, "dtype": quant["bnb_4bit_compute_dtype"], **_only(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant.get("bnb_4bit_quant_type"),
        use_bnb_nested_quant=quant.get("bnb_4bit_use_double_quant"),
        use_peft=True,
        lora_r=lora.get("r"),
        lora_alpha=lora.get("lora_alpha"),
        lora_dropout=lora.get("lora_dropout"),
        lora_target_modules=lora.get("target_modules"),
        use_rslora=lora.get("use_rslora"),
    )}  # fmt: skip
    out.blocks.append(("trl.ModelConfig", model))
    out.blocks.append(("trl.ScriptArguments", {"dataset_name": str(data.folder)}))
    sft: dict[str, Any] = {"output_dir": OUTPUT_DIR, **parts.training, **_schedule(parts)}
    sft.update(_only(max_length=parts.max_seq_length), packing=True)  # the trials trained on packed blocks
    if data.kind == "chat":
        template = trl_chat_template(request, data)
        if template.path is not None:
            sft.update(assistant_only_loss=True, chat_template_path=str(template.path))
            out.beside[template.path] = template.text
        elif not template.why:  # the model's template has the markers already
            sft["assistant_only_loss"] = True
        else:
            sft["assistant_only_loss"] = False
            out.remarks["assistant_only_loss"] = template.why
    elif data.kind == "prompt_completion":
        sft["completion_only_loss"] = True
    out.blocks.append(("trl.SFTConfig", sft))
    if request.adapter_path:
        out.header.append(
            f"to start from the best trial's adapter: load it with PeftModel.from_pretrained({request.adapter_path!r})"
        )
    out.beside.update(_data_file(data))
    return out


def _llamafactory(request: ExportRequest, data: Dataset) -> Export:
    from fitness.qlora.export.templates import llamafactory_keys

    parts = _parts(request)
    out = Export(header=_header(f"LLaMA-Factory: llamafactory-cli train {_name(request)}", request, parts, data))
    if request.adapter_path:
        out.header.append(
            f"to start from the best trial's adapter instead: adapter_name_or_path: {request.adapter_path}"
        )
    quant, lora = parts.quant, parts.lora
    out.blocks.append(("model", {"model_name_or_path": parts.model, **_only(
        quantization_bit=4,
        quantization_method="bnb",
        quantization_type=quant.get("bnb_4bit_quant_type"),
        double_quantization=quant.get("bnb_4bit_use_double_quant"),
    )}))  # fmt: skip
    method = {"stage": "pt" if data.kind == "text" else "sft", "do_train": True, "finetuning_type": "lora"}
    targets = lora.get("target_modules")
    method.update(_only(
        lora_rank=lora.get("r"),
        lora_alpha=_int_alpha(lora.get("lora_alpha"), out, "lora_alpha"),
        lora_dropout=lora.get("lora_dropout"),
        lora_target="all" if targets == "all-linear" else ",".join(targets) if isinstance(targets, list) else targets,
        use_rslora=lora.get("use_rslora"),
    ))  # fmt: skip
    out.blocks.append(("method", method))
    folder = data.folder.parent  # the YAML's: dataset_info.json goes beside it
    out.beside[folder / "dataset_info.json"] = _dataset_info(data)
    dataset: dict[str, Any] = {"dataset": LLAMAFACTORY_DATASET, "dataset_dir": str(folder)}
    if data.kind == "chat":
        dataset.update(llamafactory_keys(request))
    elif data.kind == "prompt_completion":
        dataset["template"] = "empty"  # the trials joined prompt and completion as they are
    if parts.max_seq_length:
        dataset["cutoff_len"] = parts.max_seq_length
    if data.kind == "text":  # pt packs by itself into blocks of cutoff_len; packing: true would take one off
        out.remarks["cutoff_len"] = "pt packs the text into blocks of this many tokens, as the trials trained"
    else:  # its packed sequences hold cutoff_len - 1 tokens and one pad: cutoff_len long, as the trials'
        dataset["packing"] = True
        out.remarks["cutoff_len"] = (
            "LLaMA-Factory packs cutoff_len - 1 tokens and one pad: blocks as long as the trials'"
        )
    out.blocks += [("dataset", dataset), ("output", {"output_dir": OUTPUT_DIR})]
    train = {k: v for k, v in parts.training.items() if k not in ("gradient_checkpointing", "activation_checkpointing")}
    if not request.config.get("gradient_checkpointing", False):
        train["disable_gradient_checkpointing"] = True  # LLaMA-Factory's default is on
    out.blocks.append(("train", {**train, **_schedule(parts)}))
    out.beside.update(_data_file(data))
    return out


def _dataset_info(data: Dataset) -> str:
    """LLaMA-Factory's dataset registry with this export's entry (``merge_beside`` keeps a file's other entries)."""
    entries: dict[str, Any] = {}
    if data.kind == "chat":
        entry = {
            "file_name": str(data.file),
            "formatting": "sharegpt",
            "columns": {"messages": "messages"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                     "assistant_tag": "assistant", "system_tag": "system"},
        }  # fmt: skip
    elif data.kind == "text":
        entry = {"file_name": str(data.file), "columns": {"prompt": "text"}}
    else:
        entry = {"file_name": str(data.file), "columns": {"prompt": "prompt", "response": "completion"}}
    entries[LLAMAFACTORY_DATASET] = entry
    return json.dumps(entries, indent=2) + "\n"


def _axolotl(request: ExportRequest, data: Dataset) -> Export:
    parts = _parts(request)
    out = Export(header=_header(f"axolotl: axolotl train {_name(request)}", request, parts, data))
    if request.adapter_path:
        out.header.append(f"to start from the best trial's adapter instead: lora_model_dir: {request.adapter_path}")
    quant, lora = parts.quant, parts.lora
    bnb = _only(
        bnb_4bit_quant_type=quant.get("bnb_4bit_quant_type"),
        bnb_4bit_use_double_quant=quant.get("bnb_4bit_use_double_quant"),
        bnb_4bit_compute_dtype=quant["bnb_4bit_compute_dtype"],  # the trial's, whatever bf16/fp16 below say
    )
    out.blocks.append(
        (
            "model",
            {
                "base_model": parts.model,
                "load_in_4bit": True,
                "adapter": "qlora",
                **_only(bnb_config_kwargs=bnb or None),
            },
        )
    )
    targets = lora.get("target_modules")
    adapter = _only(
        lora_r=lora.get("r"),
        lora_alpha=_int_alpha(lora.get("lora_alpha"), out, "lora_alpha"),
        lora_dropout=lora.get("lora_dropout"),
        lora_target_linear=True if targets == "all-linear" else None,
        lora_target_modules=targets if isinstance(targets, list) else None,
        peft_use_rslora=lora.get("use_rslora"),
    )
    if request.device != "cuda":  # its LoRA kernels are Triton: on by default, and they crash without CUDA
        adapter.update(lora_qkv_kernel=False, lora_o_kernel=False, lora_mlp_kernel=False)
        out.remarks["lora_qkv_kernel"] = "the run had no CUDA; axolotl's LoRA kernels need it"
    out.blocks.append(("lora", adapter))
    dataset: dict[str, Any] = {"path": str(data.file), "ds_type": "json"}
    if data.kind == "chat":
        dataset.update(type="chat_template", field_messages="messages", roles_to_train=["assistant"])
    elif data.kind == "text":
        dataset.update(type="completion", field="text")
    else:  # prompt + completion, joined as they are, the loss on the completion
        dataset["type"] = {"field_instruction": "prompt", "field_output": "completion", "format": "{instruction}",
                           "no_input_format": "{instruction}"}  # fmt: skip
    block = {"datasets": [dataset], "train_on_inputs": False, **_only(sequence_len=parts.max_seq_length)}
    if data.kind == "chat":
        block["chat_template"] = "tokenizer_default"  # the model's own, as the trials rendered
    block["sample_packing"] = True
    out.blocks += [("dataset", block), ("output", {"output_dir": OUTPUT_DIR})]
    training, length = parts.training, parts.length
    steps = {"max_steps": length.max_steps} if length.max_steps else {"num_epochs": length.epochs}
    warmup = {"warmup_steps": int(length.warmup_steps)} if length.max_steps else {"warmup_ratio": _ratio(request)}
    out.blocks.append(("training", {**_only(
        micro_batch_size=training.get("per_device_train_batch_size"),
        gradient_accumulation_steps=training.get("gradient_accumulation_steps"),
        learning_rate=training.get("learning_rate"),
        optimizer=training.get("optim"),
        lr_scheduler=training.get("lr_scheduler_type"),
        weight_decay=training.get("weight_decay"),
        max_grad_norm=training.get("max_grad_norm"),
        gradient_checkpointing=bool(request.config.get("gradient_checkpointing", False)),
        seed=training.get("seed"),
    ), **steps, **warmup, "bf16": training["bf16"], "fp16": training["fp16"]}))  # fmt: skip
    if training.get("use_cpu"):  # axolotl passes no use_cpu, and TrainingArguments refuses bf16 on a CPU without it
        out.blocks[-1][1]["bf16"] = False
        out.remarks["bf16"] = (
            "a CPU run: axolotl can't train bf16 on a CPU; the 4-bit matmuls compute in bfloat16 as the trial's (bnb_config_kwargs); true on a GPU"
        )
    out.beside.update(_data_file(data))
    return out


FORMATS: dict[str, Callable[[ExportRequest, Dataset], Export]] = {
    "hf": _hf,
    "trl": _trl,
    "llamafactory": _llamafactory,
    "axolotl": _axolotl,
}


def _name(request: ExportRequest) -> str:
    return request.out.name if request.out is not None else "THIS_FILE"


def _ratio(request: ExportRequest) -> float:
    return (
        0.0 if request.config.get("lr_scheduler_type") == "constant" else float(request.config.get("warmup_ratio", 0))
    )


def _int_alpha(alpha: Any, out: Export, key: str) -> Any:
    """LLaMA-Factory and axolotl take an integer alpha; a fractional one is rounded, and said so."""
    if isinstance(alpha, float) and not alpha.is_integer():
        out.remarks[key] = f"tuned {alpha:g}, rounded: this trainer takes an integer"
        return round(alpha)
    return int(alpha) if isinstance(alpha, float) else alpha


def _only(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def merge_beside(export: Export, existing: Mapping[Path, str]) -> None:
    """Files already there that the export adds to (dataset_info.json): their other entries kept."""
    for path, text in existing.items():
        if path in export.beside and path.name == "dataset_info.json":
            entries = json.loads(text) if text.strip() else {}
            entries.update(json.loads(export.beside[path]))
            export.beside[path] = json.dumps(entries, indent=2) + "\n"
