"""The QLoRA fitness declares what its model accepts: its linear modules, its context length.

Read from the model's config only (no weights), on the tiny Llama: no worker starts here.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from evo.trial import Budget, ConfigError, Trial, TrialResult, why_refused
from fitness.qlora import QLoRAFitness
from fitness.qlora.base.architecture import Architecture, read_architecture
from fitness.qlora.base.source import resolve_model
from fitness.qlora.genes import GENES, genes_for_model
from fitness.qlora.spec import QLoRASpec

ROOT = Path(__file__).resolve().parents[4]
LLAMA_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def tiny_fitness(tiny_spec):
    return QLoRAFitness.from_spec(tiny_spec)  # no trial: the worker never starts


def test_the_declared_context_is_the_models(tiny_model, tiny_fitness):
    seq = tiny_fitness.genes["max_seq_length"]
    assert seq.high == json.loads((tiny_model / "config.json").read_text())["max_position_embeddings"] == 512
    assert why_refused(seq, 512) is None and why_refused(seq, 128) is None
    assert why_refused(seq, 513) == "must be in [2, 512]"


def test_the_declared_modules_are_the_models_linear_layers(tiny_fitness):
    modules = tiny_fitness.genes["target_modules"]
    assert modules.names == LLAMA_LINEAR  # lm_head (tied to the embeddings) is no target
    assert modules.choices == ("attention", "mlp", "all-linear")
    for accepted in (["q_proj", "v_proj"], "all-linear", "attention", list(LLAMA_LINEAR)):
        assert why_refused(modules, accepted) is None, accepted
    problem = why_refused(modules, ["q_proj", "nope"])
    assert problem == f"module 'nope' is not in the model (its linear modules: {', '.join(LLAMA_LINEAR)})"
    assert "did you mean 'up_proj'?" in why_refused(modules, ["up_prj"])
    assert why_refused(modules, ["lm_head"]) is not None
    assert GENES["target_modules"].names == () and GENES["max_seq_length"].high is None  # the static ones stay open


def test_from_spec_reads_the_config_once_then_the_cache(tiny_model, tmp_path, record_property):
    spec = {"type": "qlora", "model": str(tiny_model), "cache_dir": str(tmp_path)}
    timings = {when: _time_from_spec_in_a_fresh_process(spec) for when in ("first", "cached")}
    record_property("from_spec_seconds", timings)  # measured, not asserted: the CPU is shared
    print(
        f"from_spec: {timings['first']:.2f} s reading the config (imports included), {timings['cached']:.3f} s cached"
    )
    (cached,) = (tmp_path / "architecture").iterdir()
    cached.write_text("{not json")  # a torn cache file is read again, not trusted
    assert QLoRAFitness.from_spec(spec).genes["max_seq_length"].high == 512
    saved = json.loads(cached.read_text())
    assert (saved["context_length"], saved["linear_modules"]) == (512, list(LLAMA_LINEAR))
    assert saved["shape"]["hidden_size"] == 64 and saved["shape"]["layers"] == 2  # what memory is estimated from


def _time_from_spec_in_a_fresh_process(spec: dict) -> float:
    code = (
        "import json, sys, time; from fitness.qlora import QLoRAFitness; start = time.perf_counter(); "
        f"fitness = QLoRAFitness.from_spec({spec!r}); seconds = time.perf_counter() - start; "
        f"assert fitness.genes['target_modules'].names == {LLAMA_LINEAR!r}; print(seconds)"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT)
    return float(done.stdout)


def test_an_eval_length_past_the_context_is_a_config_error(tiny_spec):
    with pytest.raises(ConfigError, match=r"^fitness\.eval_seq_length: 1024 is longer than the model's context \(512"):
        QLoRAFitness.from_spec({**tiny_spec, "eval_seq_length": 1024})


def test_an_unreadable_config_leaves_the_genes_unchecked(tmp_path, caplog):
    model = tmp_path / "odd-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    spec = {"type": "qlora", "model": str(model), "cache_dir": str(tmp_path / "cache")}
    with caplog.at_level(logging.WARNING, logger="fitness.qlora.base.architecture"):
        fitness = QLoRAFitness.from_spec(spec)
    assert dict(fitness.genes) == dict(GENES)
    assert "could not read the config" in caplog.text and "not checked" in caplog.text
    assert read_architecture(resolve_model(QLoRASpec.from_dict(spec).model_settings), tmp_path / "cache") is None
    assert not (tmp_path / "cache" / "architecture").exists()  # a failure is not cached


def test_a_model_without_the_named_modules_offers_what_it_has():
    genes = genes_for_model(64, ("c_attn", "c_proj", "c_fc"))  # GPT-2's, and a context below the default 128
    modules, seq = genes["target_modules"], genes["max_seq_length"]
    assert modules.choices == ("all-linear",) and modules.default == "all-linear"
    assert why_refused(modules, "attention") is not None and why_refused(modules, ["c_attn"]) is None
    assert (seq.high, seq.default) == (64, 64)
    assert genes_for_model(None, ())["max_seq_length"] == GENES["max_seq_length"]


class _Recorder:
    """Stands in for the worker: keeps the trials it is given."""

    def __init__(self) -> None:
        self.trials: list[Trial] = []

    def evaluate(self, trial: Trial) -> TrialResult:
        self.trials.append(trial)
        return TrialResult.complete({"val_perplexity": 1.0})

    def evaluate_batch(self, trials: list[Trial]) -> list[TrialResult]:
        return [self.evaluate(trial) for trial in trials]


def test_trials_without_the_key_get_the_models_own_default(tiny_spec):
    from fitness.qlora.data.corpus import load_corpus

    parsed = QLoRASpec.from_dict(tiny_spec)
    genes = genes_for_model(64, ("c_attn", "c_proj", "c_fc"))
    fitness = QLoRAFitness(
        parsed, source=resolve_model(parsed.model_settings), corpus=load_corpus("pydoc", 0.1), genes=genes
    )
    fitness._worker = _Recorder()  # type: ignore[assignment]
    fitness.evaluate(Trial(0, {"r": 8}, Budget(steps=1), 0))
    fitness.evaluate(Trial(1, {"target_modules": ["c_fc"], "max_seq_length": 32}, Budget(steps=1), 0))
    first, second = (dict(t.config) for t in fitness._worker.trials)
    assert first == {"r": 8, "target_modules": "all-linear", "max_seq_length": 64}
    assert second == {"target_modules": ["c_fc"], "max_seq_length": 32}


def _found(architecture: Architecture | None) -> Architecture | None:
    """The context and the module names (the shape is tests/fitness/qlora/memory/test_planner.py's)."""
    return None if architecture is None else Architecture(architecture.context_length, architecture.linear_modules)


def test_the_architecture_of_a_converted_gguf_is_read_from_its_cache_dir(tiny_model, tmp_path):
    """A GGUF model's config comes from its converted copy when there is one, not from the GGUF."""
    from fitness.qlora.base.source import ModelSource, converted_gguf_dir

    gguf = ModelSource(str(tmp_path), "model.Q4.gguf", "local:test-gguf", is_local=True)  # no such file
    converted = converted_gguf_dir(gguf, tmp_path / "cache")
    converted.mkdir(parents=True)
    (converted / "config.json").write_text((Path(tiny_model) / "config.json").read_text())
    assert _found(read_architecture(gguf, tmp_path / "cache")) == Architecture(512, LLAMA_LINEAR)


def test_a_hub_models_config_is_read_from_the_file_found_and_an_unreadable_one_is_refused(tiny_model, tmp_path):
    """A hub model's config comes from the config.json hub.find_model_config found; one that
    transformers cannot read is a ConfigError, not a warning: its weights would not load either."""
    from fitness.qlora.base.source import ModelSource

    hub = ModelSource("someone/tiny", None, "hub:someone/tiny", is_local=False)
    assert _found(read_architecture(hub, tmp_path, Path(tiny_model) / "config.json")) == Architecture(512, LLAMA_LINEAR)
    odd = tmp_path / "config.json"
    odd.write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(ConfigError, match=r"^fitness\.model: transformers \S+ cannot read the config of someone/tiny"):
        read_architecture(hub, tmp_path, odd)
    assert not (tmp_path / "architecture").exists()  # a hub repo may change under its id: nothing cached
