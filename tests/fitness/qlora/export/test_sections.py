"""`evo best --export` sections load straight into the Hugging Face classes."""

from fitness.qlora.export import split_sections
from fitness.qlora.genes import parse_genes
from fitness.qlora.spec import LRScaling


def test_exported_sections_load_into_trainingarguments_loraconfig_and_bitsandbytesconfig(tmp_path):
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig, TrainingArguments

    genes = {
        "learning_rate": 2e-3,
        "r": 32,
        "lora_alpha": 64,
        "target_modules": "attention",
        "optim": "adamw_torch",
        "lr_scheduler_type": "cosine",
        "warmup_ratio": 0.1,
        "bnb_4bit_quant_type": "fp4",
    }
    cfg, _, _ = parse_genes(genes, lr_scaling=LRScaling.NONE, lr_reference_batch=8)
    applied = {**cfg.as_dict(), "bnb_4bit_compute_dtype": "bfloat16"}  # as the runner records it
    sections = split_sections(applied)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, **sections["training"])
    lora = LoraConfig(**sections["lora"])
    quant = BitsAndBytesConfig(**sections["quantization"])
    assert args.learning_rate == 2e-3 and args.lr_scheduler_type.value == "cosine"
    assert lora.r == 32 and set(lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert quant.load_in_4bit and quant.bnb_4bit_quant_type == "fp4"
    assert sections["tokenizer"] == {"model_max_length": 128} and "other" not in sections  # no key without a class
    assert (args.bf16, args.fp16) == (True, False)  # the dtype the trial trained in, stated


def test_warmup_ratio_is_named_for_the_installed_transformers():
    assert split_sections({"warmup_ratio": 0.1}, transformers_major=4)["training"] == {"warmup_ratio": 0.1}
    assert split_sections({"warmup_ratio": 0.1}, transformers_major=5)["training"] == {"warmup_steps": 0.1}


def test_the_precision_is_stated_for_every_compute_dtype():
    for dtype, flags in (("float32", (False, False)), ("bfloat16", (True, False)), ("float16", (False, True))):
        training = split_sections({"bnb_4bit_compute_dtype": dtype})["training"]
        assert (training["bf16"], training["fp16"]) == flags


def test_the_composition_root_exports_without_building_the_fitness():
    from fitness import export_sections

    config = {"learning_rate": 1e-3, "r": 8, "target_modules": "mlp", "max_seq_length": 64}
    expected = split_sections(config)
    assert expected["lora"]["target_modules"] == ["gate_proj", "up_proj", "down_proj"]
    # no model or data is looked for: a spec naming a missing model still exports
    assert export_sections({"type": "qlora", "model": "/no/such/model"}, config) == expected
    assert export_sections({"type": "synthetic"}, config) == expected  # the same genes, the same sections
    assert export_sections({"type": "Quadratic"}, {"x": 1.0}) == {"other": {"x": 1.0}}  # a Python-API fitness
