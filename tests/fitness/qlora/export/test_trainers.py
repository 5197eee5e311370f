"""`evo best --export FILE --format hf | trl | llamafactory | axolotl`: files each trainer runs as written.

No trainer needed here: the key names are checked against lists read from the trainers' own
parsers (LLaMA-Factory 0.9.5 ``hparams/*_args.py``, axolotl 0.19 ``utils/schemas``), TRL's and
TrainingArguments' with the real classes (strict: an unknown key fails), and every value
against the trial's. test_real_trainers.py (slow) runs each file in each trainer.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from evo.trial import ConfigError
from fitness.qlora.export.facts import ExportRequest, installed_transformers, length, parse_version
from fitness.qlora.export.trainers import trainer_export
from fitness.qlora.genes import parse_genes
from fitness.qlora.spec import LRScaling
from tests.fitness.qlora.chatdata import chat_model, conversations, write_jsonl

ADAPTER = "/runs/chat/best/adapter"
# LLaMA-Factory's own arguments (ModelArguments, QuantizationArguments, DataArguments, FinetuningArguments)
LLAMAFACTORY_KEYS = {
    "model_name_or_path", "quantization_bit", "quantization_method", "quantization_type", "double_quantization",
    "disable_gradient_checkpointing", "stage", "finetuning_type", "lora_rank", "lora_alpha", "lora_dropout",
    "lora_target", "use_rslora", "dataset", "dataset_dir", "template", "default_system", "cutoff_len", "packing",
}  # fmt: skip
# axolotl's AxolotlInputConfig fields and its SFTDataset fields
AXOLOTL_KEYS = {
    "base_model", "load_in_4bit", "adapter", "bnb_config_kwargs", "lora_r", "lora_alpha", "lora_dropout",
    "lora_target_linear", "lora_target_modules", "peft_use_rslora", "lora_qkv_kernel", "lora_o_kernel",
    "lora_mlp_kernel", "datasets", "chat_template", "train_on_inputs", "sequence_len", "sample_packing", "output_dir",
    "micro_batch_size", "gradient_accumulation_steps", "learning_rate", "optimizer", "lr_scheduler", "warmup_steps",
    "warmup_ratio", "max_steps", "num_epochs", "weight_decay", "max_grad_norm", "gradient_checkpointing", "seed",
    "bf16", "fp16",
}  # fmt: skip
AXOLOTL_DATASET_KEYS = {"path", "ds_type", "type", "field_messages", "roles_to_train", "field"}

GENES = [
    {"learning_rate": 2e-3, "r": 16, "lora_alpha": 32, "target_modules": "attention", "lr_scheduler_type": "cosine",
     "warmup_ratio": 0.1, "max_seq_length": 256, "bnb_4bit_compute_dtype": "float32"},
    {"learning_rate": 5e-4, "r": 8, "lora_alpha": 12.5, "target_modules": "all-linear", "use_rslora": True,
     "optim": "paged_adamw_8bit", "gradient_checkpointing": True, "bnb_4bit_quant_type": "fp4",
     "bnb_4bit_use_double_quant": False, "bnb_4bit_compute_dtype": "bfloat16", "per_device_train_batch_size": 2,
     "gradient_accumulation_steps": 4, "weight_decay": 0.01, "warmup_ratio": 0.25, "lr_scheduler_type": "linear"},
    {"target_modules": ["q_proj", "v_proj"], "lr_scheduler_type": "constant_with_warmup", "max_grad_norm": 1.0,
     "bnb_4bit_compute_dtype": "float16", "warmup_ratio": 0.3},
]  # fmt: skip
KINDS = ("chat", "text", "prompt_completion")
TRAINED_STEPS = 10


@pytest.fixture(scope="module")
def data(tiny_model, tmp_path_factory):
    """A chat model and one data file of each kind of document."""
    work = tmp_path_factory.mktemp("export-data")
    pairs = [{"prompt": f"Q{i}: ", "completion": f"answer {i}"} for i in range(20)]
    return {
        "model": str(chat_model(tiny_model, work / "model")),
        "cache_dir": str(work / "cache"),
        "chat": str(write_jsonl(work / "chat.jsonl", conversations(30))),
        "text": str(write_jsonl(work / "text.jsonl", [{"text": f"line {i} of text"} for i in range(20)])),
        "prompt_completion": str(write_jsonl(work / "pc.jsonl", pairs)),
    }


def request(data, genes, kind, out, **given):
    compute = genes.get("bnb_4bit_compute_dtype", "float32")
    cfg, _, _ = parse_genes(genes, lr_scaling=LRScaling.NONE, lr_reference_batch=8)
    applied = {**cfg.as_dict(), "bnb_4bit_compute_dtype": compute}  # as the runner records it
    spec = {"type": "qlora", "model": data["model"], "data": data[kind], "cache_dir": data["cache_dir"]}
    values = dict(adapter_path=ADAPTER, data_format=kind, device="cpu", trained_steps=TRAINED_STEPS, out=out)
    values["transformers"] = installed_transformers()  # as evo best finds it where the trainer is this Python
    return ExportRequest(applied, spec, **{**values, **given}, notes=("evo best runs/x: trial 3",))


def export(fmt, req):
    made = trainer_export(fmt, req)
    return yaml.safe_load(made.text()), made


def test_the_exported_precision_is_the_dtype_the_trial_trained_in(data, tmp_path):
    for genes in GENES:
        dtype = genes["bnb_4bit_compute_dtype"]
        flags = {"bf16": dtype == "bfloat16", "fp16": dtype == "float16"}
        for fmt in ("hf", "trl", "llamafactory", "axolotl"):
            cfg, _ = export(fmt, request(data, genes, "text", tmp_path / f"{fmt}.yaml", device="cuda"))
            found = cfg.get("training", cfg.get("train", cfg))
            assert {k: found.get(k, cfg.get(k)) for k in flags} == flags, (fmt, dtype)
            on_cpu, _ = export(fmt, request(data, genes, "text", tmp_path / f"{fmt}.yaml", device="cpu"))
            found = on_cpu.get("training", on_cpu.get("train", on_cpu))
            if fmt == "axolotl":  # it passes no use_cpu: no bf16 on a CPU, the 4-bit compute dtype still the trial's
                assert not on_cpu["bf16"] and on_cpu["bnb_config_kwargs"]["bnb_4bit_compute_dtype"] == dtype
            else:  # transformers refuses bf16 on a CPU without use_cpu
                assert found["bf16"] == flags["bf16"] and found.get("use_cpu", False) is flags["bf16"]
        hf, _ = export("hf", request(data, genes, "text", tmp_path / "hf.yaml"))
        assert hf["model"]["dtype"] == hf["quantization"]["bnb_4bit_compute_dtype"] == dtype
        trl, _ = export("trl", request(data, genes, "text", tmp_path / "trl.yaml"))
        assert trl["dtype"] == dtype  # the base's unquantized parts and the 4-bit compute, as TRL loads them


@pytest.mark.parametrize("index", range(len(GENES)))
def test_warmup_is_the_integer_the_trials_warmed_up_for(index, data, tmp_path):
    ratio = GENES[index]["warmup_ratio"]
    expected = -(-round(ratio * 100) * TRAINED_STEPS // 100)  # ceil, as the trials' schedule
    for fmt in ("hf", "trl", "llamafactory", "axolotl"):
        cfg, _ = export(fmt, request(data, GENES[index], "chat", tmp_path / f"{fmt}.yaml"))
        found = cfg.get("training", cfg.get("train", cfg))
        assert found["warmup_steps"] == expected and isinstance(found["warmup_steps"], int), fmt
        assert found["max_steps"] == TRAINED_STEPS and "warmup_ratio" not in found


def test_the_length_asked_for_and_its_warmup_per_transformers_version(data, tmp_path):
    genes = GENES[0]  # warmup_ratio 0.1
    req = request(data, genes, "text", tmp_path / "a.yaml", steps=1000)
    assert (length(req).max_steps, length(req).warmup_steps) == (1000, 100)
    for version, key, value in (((4, 57), "warmup_ratio", 0.1), ((5, 25), "warmup_steps", 0.1)):
        cfg, _ = export("hf", request(data, genes, "text", tmp_path / "b.yaml", epochs=2, transformers=version))
        assert cfg["training"]["num_train_epochs"] == 2 and "max_steps" not in cfg["training"]
        assert cfg["training"][key] == value and ("warmup_ratio" in cfg["training"]) == (key == "warmup_ratio")
    cfg, made = export("hf", request(data, genes, "text", tmp_path / "c.yaml"))
    assert f"max_steps {TRAINED_STEPS}: what each trial trained" in made.text()
    with pytest.raises(ConfigError, match="--steps"):
        length(request(data, genes, "text", tmp_path / "d.yaml", trained_steps=None))
    constant = {**genes, "lr_scheduler_type": "constant"}  # no warmup, in the trials as in the trainers
    assert length(request(data, constant, "text", tmp_path / "e.yaml")).warmup_steps == 0


def test_checkpointing_is_named_as_the_target_transformers_names_it(data, tmp_path):
    genes = GENES[1]  # gradient_checkpointing on
    for version, name in (((4, 57), "gradient_checkpointing"), ((5, 22), "gradient_checkpointing"),
                          ((5, 23), "activation_checkpointing"), (None, "gradient_checkpointing")):  # fmt: skip
        cfg, _ = export("trl", request(data, genes, "text", tmp_path / "t.yaml", transformers=version))
        other = {"gradient_checkpointing", "activation_checkpointing"} - {name}
        assert cfg[name] is True and not other & set(cfg), version
    assert parse_version("4.57") == (4, 57) and parse_version("5") == (5, 0) and parse_version("5.25.0") == (5, 25)
    with pytest.raises(ConfigError, match="--target-version"):
        parse_version("latest")


@pytest.mark.filterwarnings("error::FutureWarning")  # no deprecated key for the installed transformers
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("index", range(len(GENES)))
def test_hf_sections_load_into_their_classes_strictly(index, kind, data, tmp_path):
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig, HfArgumentParser, TrainingArguments

    cfg, made = export("hf", request(data, GENES[index], kind, tmp_path / "hf.yaml"))
    (args,) = HfArgumentParser(TrainingArguments).parse_dict(cfg["training"], allow_extra_keys=False)
    assert args.learning_rate == pytest.approx(made_lr(index)) and args.max_steps == TRAINED_STEPS
    LoraConfig(**cfg["lora"])
    assert BitsAndBytesConfig(**cfg["quantization"]).load_in_4bit
    assert set(cfg) == {"model", "tokenizer", "dataset", "training", "lora", "quantization", "adapter_path"}
    assert cfg["tokenizer"]["model_max_length"] == GENES[index].get("max_seq_length", 128)
    assert cfg["dataset"] == {"path": "json", "data_files": str(tmp_path / "hf-data" / "train.jsonl"), "split": "train"}
    assert Path(cfg["dataset"]["data_files"]) in made.beside


def made_lr(index):
    return parse_genes(GENES[index], lr_scaling=LRScaling.NONE, lr_reference_batch=8)[0].learning_rate


@pytest.mark.filterwarnings("error::FutureWarning")
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("index", range(len(GENES)))
def test_trl_keys_are_its_sft_script_arguments(index, kind, data, tmp_path):
    pytest.importorskip("trl")
    from transformers import HfArgumentParser
    from trl import ModelConfig, ScriptArguments, SFTConfig

    out = tmp_path / "trl.yaml"
    cfg, made = export("trl", request(data, GENES[index], kind, out))
    out.write_text(made.text())
    parser = HfArgumentParser((ScriptArguments, SFTConfig, ModelConfig))
    script, sft, model = parser.parse_yaml_file(str(out), allow_extra_keys=False)  # an unknown key fails
    assert Path(script.dataset_name) == tmp_path / "trl-data" and sft.max_steps == TRAINED_STEPS
    assert sft.packing and sft.assistant_only_loss is (kind == "chat")
    assert sft.completion_only_loss is (True if kind == "prompt_completion" else None)
    assert model.use_peft and model.load_in_4bit and model.lora_r == GENES[index].get("r", 64)
    if kind == "chat":  # the model's template with generation markers, written beside the file
        template = Path(sft.chat_template_path)
        assert template.name == "trl.chat_template.jinja" and "{% generation %}" in made.beside[template]


def test_the_trl_template_renders_as_the_models_and_marks_the_assistant_turns(data, tmp_path):
    from transformers import AutoTokenizer

    _, made = export("trl", request(data, GENES[0], "chat", tmp_path / "trl.yaml"))
    template = made.beside[tmp_path / "trl.chat_template.jinja"]
    tokenizer = AutoTokenizer.from_pretrained(data["model"])
    for record in conversations(10, seed=5):
        messages = record["messages"]
        assert tokenizer.apply_chat_template(messages, tokenize=False, chat_template=template) == (
            tokenizer.apply_chat_template(messages, tokenize=False)
        )
        out = tokenizer.apply_chat_template(
            messages, chat_template=template, return_dict=True, return_assistant_tokens_mask=True
        )
        marked = tokenizer.decode([i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m])
        answers = [m["content"] + "<eos>" for m in messages if m["role"] == "assistant"]
        assert marked == "".join(answers)  # each assistant turn with its end-of-turn marker, as the trials scored


def test_a_template_that_cant_be_marked_trains_whole_conversations_and_says_so(tiny_model, tmp_path):
    # a template that rewrites history (drops earlier assistant turns) is no prefix + content + suffix
    odd = (
        "{% for m in messages %}{% if m['role'] != 'assistant' or loop.last %}<|{{ m['role'] }}|>\n"
        "{{ m['content'] }}<eos>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    data = {"model": str(chat_model(tiny_model, tmp_path / "odd", odd)), "cache_dir": str(tmp_path / "cache")}
    data["chat"] = str(write_jsonl(tmp_path / "chat.jsonl", conversations(10)))
    cfg, made = export("trl", request(data, GENES[0], "chat", tmp_path / "trl.yaml"))
    assert cfg["assistant_only_loss"] is False and "chat_template_path" not in cfg
    line = next(x for x in made.text().splitlines() if x.startswith("assistant_only_loss"))
    assert "{% generation %} markers" in line and "chat_template_path" in line


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("index", range(len(GENES)))
def test_llamafactory_keys_are_its_own_or_trainingarguments(index, kind, data, tmp_path):
    from transformers import TrainingArguments

    cfg, made = export("llamafactory", request(data, GENES[index], kind, tmp_path / "lf.yaml"))
    training = {f.name for f in dataclasses.fields(TrainingArguments)}
    assert set(cfg) <= LLAMAFACTORY_KEYS | training, set(cfg) - LLAMAFACTORY_KEYS - training
    assert cfg["stage"] == ("pt" if kind == "text" else "sft") and f"adapter_name_or_path: {ADAPTER}" in made.text()
    assert isinstance(cfg["lora_alpha"], int) and cfg["cutoff_len"] == GENES[index].get("max_seq_length", 128)
    assert cfg.get("packing") is (None if kind == "text" else True)  # pt packs by itself, without taking one off
    info = json.loads(made.beside[tmp_path / "dataset_info.json"])[cfg["dataset"]]
    assert cfg["dataset_dir"] == str(tmp_path) and info["file_name"] == str(tmp_path / "lf-data" / "train.jsonl")
    assert info.get("formatting", "alpaca") == ("sharegpt" if kind == "chat" else "alpaca")
    assert cfg.get("template") == {"chat": None, "text": None, "prompt_completion": "empty"}[kind]  # tiny: parsed
    assert cfg.get("use_cpu", False) is (GENES[index]["bnb_4bit_compute_dtype"] == "bfloat16")  # bf16 on a CPU run


def test_llamafactory_names_smollm2s_template_with_its_system_prompt(data, tmp_path):
    from fitness.qlora.export.templates import LLAMAFACTORY_TEMPLATES

    smol = (
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n"
        "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>'"
        " + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt"
        " %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    model = chat_model(Path(data["model"]), tmp_path / "smol", smol)
    cfg, _ = export("llamafactory", request({**data, "model": str(model)}, GENES[0], "chat", tmp_path / "lf.yaml"))
    assert (cfg["template"], cfg["default_system"]) == LLAMAFACTORY_TEMPLATES[0][1:]


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("kind", KINDS)
def test_axolotl_keys_are_its_own(kind, device, data, tmp_path):
    cfg, made = export("axolotl", request(data, GENES[1], kind, tmp_path / "ax.yaml", device=device))
    assert set(cfg) <= AXOLOTL_KEYS, set(cfg) - AXOLOTL_KEYS
    (dataset,) = cfg["datasets"]
    assert set(dataset) <= AXOLOTL_DATASET_KEYS and dataset["path"] == str(tmp_path / "ax-data" / "train.jsonl")
    assert dataset["type"] == {"chat": "chat_template", "text": "completion"}.get(kind, dataset["type"])
    assert f"lora_model_dir: {ADAPTER}" in made.text() and "tuned 12.5, rounded" in made.text()
    kernels = {k: cfg.get(k) for k in ("lora_qkv_kernel", "lora_o_kernel", "lora_mlp_kernel")}
    assert kernels == ({k: False for k in kernels} if device == "cpu" else {k: None for k in kernels})
    assert cfg["gradient_checkpointing"] is True and cfg["warmup_steps"] == 3 and cfg["max_steps"] == TRAINED_STEPS


def test_the_documents_written_are_the_train_split_the_trials_trained_on(data, tmp_path):
    from fitness.qlora.base.source import default_cache_root
    from fitness.qlora.data.corpus import corpus_for
    from fitness.qlora.spec import QLoRASpec

    req = request(data, GENES[0], "chat", tmp_path / "x.yaml")
    _, made = export("axolotl", req)
    written = [json.loads(line) for line in made.beside[tmp_path / "x-data" / "train.jsonl"].splitlines()]
    spec = QLoRASpec.from_dict(req.spec)
    train = corpus_for(spec.data_settings, default_cache_root(spec.model_settings)).train
    assert written == [{"messages": doc.as_dicts()} for doc in train] and len(written) < 30  # not validation


def test_a_mix_of_kinds_or_no_export_file_is_refused(data, tmp_path):
    with pytest.raises(ConfigError, match="chat\\+text"):
        trainer_export("trl", request(data, GENES[0], "chat", tmp_path / "a.yaml", data_format="chat+text"))
    with pytest.raises(ConfigError, match="give --export FILE"):
        trainer_export("axolotl", request(data, GENES[0], "chat", None))
