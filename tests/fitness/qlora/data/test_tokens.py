"""Tokenizing, packing and the token cache, with the tiny model's tokenizer (no worker)."""

from __future__ import annotations

import json

import pytest
import torch

from fitness.qlora.data.corpus import load_corpus
from fitness.qlora.data.tokens import IGNORE_INDEX, pack, tokenize_corpus, tokenize_docs


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_prompt_tokens_carry_no_loss(tokenizer):
    stream = tokenize_docs(tokenizer, (("Question: what? ", "Answer."), ("", "plain text")))
    prompt_len = len(tokenizer("Question: what? ", add_special_tokens=False)["input_ids"])
    assert (stream.labels[:prompt_len] == IGNORE_INDEX).all()
    assert (stream.labels[prompt_len:] != IGNORE_INDEX).all()
    assert (stream.ids == tokenizer.eos_token_id).sum() == 2  # one EOS after each document


def test_packing_makes_full_blocks_without_padding(tokenizer):
    stream = tokenize_docs(tokenizer, tuple(("", f"line number {i} of the corpus") for i in range(50)))
    blocks = pack(stream, 16)
    assert blocks.ids.shape == (len(stream) // 16, 16)
    assert torch.equal(blocks.ids.flatten(), stream.ids[: blocks.ids.numel()])
    assert len(pack(stream, 10_000)) == 1  # shorter than a block: one short block


def test_tokens_are_cached_on_disk_per_tokenizer_and_data(tokenizer, tmp_path):
    rows = [{"prompt": f"Q{i} ", "completion": f"A{i}"} for i in range(20)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    corpus = load_corpus(str(data), 0.25)
    first = tokenize_corpus(corpus, tokenizer, tmp_path / "cache")
    cached = list((tmp_path / "cache" / "tokens").glob("*.pt"))
    assert len(cached) == 1
    second = tokenize_corpus(corpus, tokenizer, tmp_path / "cache")
    assert torch.equal(first.train.ids, second.train.ids) and torch.equal(
        first.validation.labels, second.validation.labels
    )
    other = load_corpus("pydoc", 0.1)
    tokenize_corpus(other, tokenizer, tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "tokens").glob("*.pt"))) == 2


def test_validation_set_is_fixed_and_capped(tokenizer, tmp_path):
    data = tokenize_corpus(load_corpus("pydoc", 0.1), tokenizer, tmp_path)
    blocks = data.validation_blocks(64, 200)
    assert blocks.ids.shape == (4, 64)  # 200 tokens round up to whole blocks
    assert torch.equal(blocks.ids, data.validation_blocks(64, 200).ids)
