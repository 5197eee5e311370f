"""Fixtures for the QLoRA fitness tests: a tiny random Llama that loads 4-bit in a second."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_VOCAB = 384


def build_tiny_llama(folder: Path) -> Path:
    """A 2-layer, hidden-64 Llama with a byte-level BPE trained on pydoc text (offline, ~1 s)."""
    from pydoc_data.topics import topics

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB, special_tokens=["<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(list(topics.values())[:20], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>", pad_token="<eos>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("evo-cache")


@pytest.fixture(scope="session")
def tiny_spec(tiny_model, cache_dir) -> dict:
    """Small enough that a 3-step trial takes well under a second inside the worker."""
    return {
        "type": "qlora",
        "model": str(tiny_model),
        "data": "pydoc",
        "cache_dir": str(cache_dir),
        "validation_tokens": 256,
        "eval_seq_length": 64,
        "trial_timeout": 120,
        "device": "cpu",
    }


@pytest.fixture(scope="session")
def shared_fitness(tiny_spec):
    """One worker for the tests that don't break it (starting one costs ~6 s of imports)."""
    from fitness.qlora import QLoRAFitness

    fitness = QLoRAFitness.from_spec(tiny_spec)
    yield fitness
    fitness.close()


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: runs a real model for minutes (deselect with -m 'not slow')")
