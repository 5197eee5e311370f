"""What the QLoRA fitness refuses before a worker starts (issue 30): a cache folder it cannot
use, a GPU that is not there, data that is not a file, and data too small to score a trial;
and that the data check, made without a tokenizer, never refuses data a tokenizer finds enough."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evo.trial import Budget, ConfigError
from fitness.qlora import QLoRAFitness
from fitness.qlora.data.corpus import MIN_VALIDATION_TOKENS, load_corpus, token_bound
from tests.conftest import ROOT, read_only
from tests.fitness.qlora.chatdata import chat_model, conversations, write_jsonl


@pytest.fixture
def spec(tiny_model, tmp_path) -> dict:
    return {"type": "qlora", "model": str(tiny_model), "data": "pydoc", "device": "cpu"}


@pytest.mark.parametrize("variable", ["EVO_CACHE_DIR", "XDG_CACHE_HOME", "HOME"])
def test_a_cache_folder_that_is_a_file_is_refused_naming_what_chose_it(spec, tmp_path, monkeypatch, variable):
    afile = tmp_path / "a-file"
    afile.write_text("x")
    for name in ("EVO_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, str(afile))
    with pytest.raises(ConfigError, match=f"^{variable}: the model and token cache .* is not a folder; name a folder"):
        QLoRAFitness.from_spec(spec)


def test_a_cache_folder_that_cannot_be_written_is_refused(spec, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked):
        with pytest.raises(ConfigError, match="^fitness.cache_dir: .* is not writable"):
            QLoRAFitness.from_spec({**spec, "cache_dir": str(locked / "evo")})


def test_cuda_where_torch_sees_no_gpu_is_refused_before_a_worker_starts(spec, monkeypatch):
    from fitness.qlora.worker import devices

    monkeypatch.setattr(devices, "visible_cuda_devices", lambda: ())  # this machine, or any, without a GPU
    with pytest.raises(ConfigError, match=r"^fitness.device: cuda, but torch sees no GPU \(torch .*\); use device"):
        QLoRAFitness.from_spec({**spec, "device": "cuda"})


def test_data_that_is_a_named_pipe_is_refused_and_one_in_a_folder_skipped(tmp_path):
    os.mkfifo(tmp_path / "pipe.txt")
    with pytest.raises(ConfigError, match="is not a regular file or folder"):
        load_corpus(str(tmp_path / "pipe.txt"), 0.1)
    (tmp_path / "a.txt").write_text("one document\n")
    (tmp_path / "b.txt").write_text("another document\n")
    corpus = load_corpus(str(tmp_path), 0.5)  # the folder's pipe is not read: no hang
    assert len(corpus.train) + len(corpus.validation) == 2


def _fitness(spec: dict, tmp_path: Path, lines: int, validation: int | None = None) -> QLoRAFitness:
    (tmp_path / "d.txt").write_text("".join(f"line {i} of the data\n" for i in range(lines)))
    extra = {"data": str(tmp_path / "d.txt"), "cache_dir": str(tmp_path / "cache")}
    if validation is not None:
        (tmp_path / "v.txt").write_text("".join(f"held out {i} here\n" for i in range(validation)))
        extra["validation_data"] = str(tmp_path / "v.txt")
    return QLoRAFitness.from_spec({**spec, **extra})


def test_data_too_small_to_score_or_train_a_trial_is_refused(spec, tmp_path):
    budget = Budget(steps=10)
    tiny = _fitness(spec, tmp_path, 40)
    with pytest.raises(
        ConfigError,
        match=f"fitness.data: the validation set holds at most \\d+ tokens; .* needs {MIN_VALIDATION_TOKENS}",
    ):
        tiny.check_trials({}, budget)
    few = _fitness(spec, tmp_path, 3, validation=40)
    with pytest.raises(
        ConfigError, match=r"at most \d+ tokens, fewer than one batch of the smallest trial \(.* 4 x .* 128\)"
    ):
        few.check_trials({}, budget)  # the genes' defaults: a batch of 4 x 128
    few.check_trials({"per_device_train_batch_size": [8, 1], "max_seq_length": [16, 64]}, budget)  # 1 x 16 fits
    _fitness(spec, tmp_path, 400).check_trials({}, budget)
    assert f"fewer than {MIN_VALIDATION_TOKENS} validation tokens" in (ROOT / "docs" / "config.md").read_text()


def test_the_bound_never_refuses_data_a_tokenizer_finds_enough(tiny_model, tmp_path):
    """``token_bound`` counts without a tokenizer; it must be at least what the tokenizer gives,
    or data with enough tokens would be refused: checked on text, prompt-completion pairs and chat."""
    from transformers import AutoTokenizer

    from fitness.qlora.data.tokens import tokenize_docs

    model = chat_model(tiny_model, tmp_path / "chat-model")
    tokenizer = AutoTokenizer.from_pretrained(model)
    pairs = [{"prompt": f"Question {i}: é?", "completion": f" answer {i} ü"} for i in range(30)]
    for data in (
        "pydoc",
        str(write_jsonl(tmp_path / "pairs.jsonl", pairs)),
        str(write_jsonl(tmp_path / "chat.jsonl", conversations(30))),
    ):
        corpus = load_corpus(data, 0.2)
        for docs in (corpus.train, corpus.validation):
            assert len(tokenize_docs(tokenizer, docs)) <= token_bound(docs), data
