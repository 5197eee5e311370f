"""`evo best --format trl | llamafactory | axolotl`: files each trainer's own config parser takes.

TRL is built for real (SFTConfig, LoraConfig, BitsAndBytesConfig). LLaMA-Factory and axolotl
pin other transformers/trl versions than this project, so they are not in the test extra:
their key names are checked against the lists below, read from their config parsers
(LLaMA-Factory 0.9.5 ``hparams/*_args.py``, axolotl 0.19 ``utils/schemas``), and where either
is importable (e.g. a venv with ``pip install --no-deps llamafactory axolotl``) its own parser
must accept the file too.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from evo.cli import main
from fitness.qlora.export_trainers import FILL_IN, ExportRequest, trainer_yaml
from fitness.qlora.genes import parse_genes
from fitness.qlora.spec import LRScaling
from tests.fitness.qlora.chatdata import chat_model, conversations, write_jsonl

ADAPTER = "/runs/chat/best/adapter"
# LLaMA-Factory's own arguments (ModelArguments, QuantizationArguments, DataArguments, FinetuningArguments)
LLAMAFACTORY_KEYS = {
    "model_name_or_path", "quantization_bit", "quantization_method", "quantization_type", "double_quantization",
    "disable_gradient_checkpointing", "stage", "finetuning_type", "lora_rank", "lora_alpha", "lora_dropout",
    "lora_target", "use_rslora", "dataset", "template", "cutoff_len", "packing",
}  # fmt: skip
# axolotl's AxolotlInputConfig fields and its SFTDataset fields
AXOLOTL_KEYS = {
    "base_model", "load_in_4bit", "adapter", "bnb_config_kwargs", "lora_r", "lora_alpha", "lora_dropout",
    "lora_target_linear", "lora_target_modules", "peft_use_rslora", "datasets", "train_on_inputs", "sequence_len",
    "sample_packing", "output_dir", "micro_batch_size", "gradient_accumulation_steps", "learning_rate", "optimizer",
    "lr_scheduler", "warmup_ratio", "weight_decay", "max_grad_norm", "gradient_checkpointing", "bf16", "fp16",
}  # fmt: skip
AXOLOTL_DATASET_KEYS = {"path", "type", "field_messages", "roles_to_train", "field"}

GENES = [
    {"learning_rate": 2e-3, "r": 16, "lora_alpha": 32, "target_modules": "attention", "lr_scheduler_type": "cosine",
     "warmup_ratio": 0.1, "max_seq_length": 256, "bnb_4bit_compute_dtype": "float32"},
    {"learning_rate": 5e-4, "r": 8, "lora_alpha": 12.5, "target_modules": "all-linear", "use_rslora": True,
     "optim": "paged_adamw_8bit", "gradient_checkpointing": True, "bnb_4bit_quant_type": "fp4",
     "bnb_4bit_use_double_quant": False, "bnb_4bit_compute_dtype": "bfloat16", "per_device_train_batch_size": 2,
     "gradient_accumulation_steps": 4, "weight_decay": 0.01},
    {"target_modules": ["q_proj", "v_proj"], "lr_scheduler_type": "constant_with_warmup", "max_grad_norm": 1.0},
]  # fmt: skip
FORMATS = ("chat", "prompt_completion", "text", None)


def request(genes, data_format="chat"):
    compute = genes.get("bnb_4bit_compute_dtype", "float32")
    cfg, _, _ = parse_genes(genes, lr_scaling=LRScaling.NONE, lr_reference_batch=8)
    applied = {**cfg.as_dict(), "bnb_4bit_compute_dtype": compute}  # as the runner records it
    return ExportRequest(applied, {"type": "qlora"}, ADAPTER, data_format, ("evo best runs/chat: trial 3",))


def load(fmt, req):
    return yaml.safe_load(trainer_yaml(fmt, req))


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("index", range(len(GENES)))
def test_trl_sections_build_sftconfig_loraconfig_and_bitsandbytesconfig(index, data_format, tmp_path):
    trl = pytest.importorskip("trl")
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig

    cfg = load("trl", request(GENES[index], data_format))
    sft = trl.SFTConfig(output_dir=str(tmp_path), use_cpu=True, **cfg["sft_config"])
    lora = LoraConfig(**cfg["lora_config"])
    quant = BitsAndBytesConfig(**cfg["quantization_config"])
    genes = {**parse_genes({}, lr_scaling=LRScaling.NONE, lr_reference_batch=8)[0].as_dict(), **GENES[index]}
    assert sft.learning_rate == genes["learning_rate"] and sft.max_length == genes["max_seq_length"]
    assert sft.packing and sft.assistant_only_loss is (data_format == "chat")
    assert lora.r == genes["r"] and lora.lora_alpha == genes["lora_alpha"] and lora.use_rslora == genes["use_rslora"]
    assert quant.load_in_4bit and quant.bnb_4bit_quant_type == genes["bnb_4bit_quant_type"]
    assert cfg["adapter_path"] == ADAPTER and cfg["model_name_or_path"]


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("index", range(len(GENES)))
def test_llamafactory_keys_are_its_own_or_trainingarguments(index, data_format, tmp_path, monkeypatch):
    from transformers import TrainingArguments

    text = trainer_yaml("llamafactory", request(GENES[index], data_format))
    cfg = yaml.safe_load(text)
    training = {f.name for f in dataclasses.fields(TrainingArguments)}
    assert set(cfg) <= LLAMAFACTORY_KEYS | training, set(cfg) - LLAMAFACTORY_KEYS - training
    assert cfg["dataset"] == FILL_IN and cfg["stage"] == ("pt" if data_format == "text" else "sft")
    assert f"adapter_name_or_path: {ADAPTER}" in text
    assert isinstance(cfg["lora_alpha"], int) and cfg["lora_target"] in (
        "q_proj,k_proj,v_proj,o_proj",
        "all",
        "q_proj,v_proj",
    )
    monkeypatch.setenv("DISABLE_VERSION_CHECK", "1")  # it pins transformers/trl versions this project doesn't
    parser = pytest.importorskip("llamafactory.hparams.parser", reason="LLaMA-Factory not installed: key names only")
    model, data, train, finetuning, _ = parser.get_train_args({**cfg, "output_dir": str(tmp_path), "use_cpu": True})
    assert (finetuning.lora_rank, model.quantization_bit, train.learning_rate) == (
        cfg["lora_rank"],
        4,
        cfg["learning_rate"],
    )


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("index", range(len(GENES)))
def test_axolotl_keys_are_its_own_and_its_validator_accepts_them(index, data_format):
    text = trainer_yaml("axolotl", request(GENES[index], data_format))
    cfg = yaml.safe_load(text)
    assert set(cfg) <= AXOLOTL_KEYS, set(cfg) - AXOLOTL_KEYS
    assert set(cfg["datasets"][0]) <= AXOLOTL_DATASET_KEYS and cfg["datasets"][0]["path"] == FILL_IN
    assert cfg["datasets"][0]["type"] == {"chat": "chat_template", "text": "completion"}.get(data_format, FILL_IN)
    assert f"lora_model_dir: {ADAPTER}" in text and isinstance(cfg["lora_alpha"], int)
    if GENES[index].get("lora_alpha") == 12.5:
        assert "tuned 12.5, rounded" in text
    pytest.importorskip("axolotl", reason="axolotl not installed: key names only")
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault
    from axolotl.utils.schemas.config import AxolotlInputConfig

    assert set(cfg) <= set(AxolotlInputConfig.model_fields)  # it ignores unknown keys, so check the names too
    checked = validate_config(DictDefault(cfg))
    assert (checked.lora_r, checked.micro_batch_size, checked.adapter) == (
        cfg["lora_r"],
        cfg["micro_batch_size"],
        "qlora",
    )


# -- through the CLI, on a real (tiny) chat run ----------------------------------------------
@pytest.fixture(scope="module")
def chat_run(tiny_model, tmp_path_factory):
    work = tmp_path_factory.mktemp("chat-run")
    config = {
        "seed": 0,
        "fitness": {
            "type": "qlora", "model": str(chat_model(tiny_model, work / "model")), "device": "cpu",
            "data": str(write_jsonl(work / "chat.jsonl", conversations(60))), "cache_dir": str(work / "cache"),
            "validation_tokens": 256, "eval_seq_length": 64,
        },
        "budget": {"steps": 2},
        "evolution": {"population_size": 2, "generations": 0},
        "search_space": {"learning_rate": {"type": "log_float", "low": 1e-4, "high": 1e-2}, "r": {"type": "int", "choices": [4, 8]}},
        "fixed": {"max_seq_length": 64},
    }  # fmt: skip
    (work / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(work / "run.yaml"), "--out", str(work / "run"), "--quiet", "--no-plots"]) == 0
    return work / "run"


@pytest.mark.parametrize("fmt", ["hf", "trl", "llamafactory", "axolotl"])
def test_evo_best_exports_each_format_with_the_adapter_path(fmt, chat_run, tmp_path, capsys):
    out = tmp_path / f"best-{fmt}.yaml"
    assert main(["best", str(chat_run), "--export", str(out), "--format", fmt]) == 0
    text = out.read_text()
    adapter = chat_run / "best" / "adapter"
    assert adapter.is_dir() and str(adapter.resolve()) in text.replace(str(chat_run), str(chat_run.resolve()))
    cfg = yaml.safe_load(text)
    if fmt == "hf":
        assert {"training", "lora", "quantization", "adapter_path"} <= set(cfg)  # as before: unchanged
    elif fmt == "trl":
        assert cfg["sft_config"]["assistant_only_loss"] is True  # the run's data was chat
        assert "trial" in text.splitlines()[0]
    else:
        assert cfg["lora_r" if fmt == "axolotl" else "lora_rank"] in (4, 8)


def test_trainer_formats_write_one_config(chat_run, capsys):
    assert main(["best", str(chat_run), "--format", "trl", "--top", "2"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "--format trl" in err[0] and "--top 2" in err[0]
    assert main(["best", str(chat_run), "--format", "tlr"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "unknown trainer format 'tlr' (known: hf, trl, llamafactory, axolotl)" in err[0]


def test_a_run_of_another_fitness_has_no_trainer_format(tmp_path, synthetic_config, capsys):
    (tmp_path / "c.yaml").write_text(
        json.dumps({**synthetic_config, "evolution": {"population_size": 2, "generations": 0}})
    )
    assert main(["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--quiet", "--no-plots"]) == 0
    capsys.readouterr()
    assert main(["best", str(tmp_path / "run"), "--format", "axolotl"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "only a qlora run" in err[0]
