"""Chat data: rendered with the model's template, the loss on assistant turns only, token by token."""

from __future__ import annotations

import pytest
import torch

from evo.trial import Budget, ConfigError, Trial
from fitness.qlora.data.chat import chat_tokens, render_with_spans, tokens_by_pieces
from fitness.qlora.data.corpus import load_corpus
from fitness.qlora.data.records import Chat, Fields, record_doc
from fitness.qlora.data.tokens import IGNORE_INDEX, TokenStream, pack, tokenize_corpus, tokenize_docs
from tests.fitness.qlora.chatdata import TINY_TEMPLATE, chat_model, conversations, write_jsonl

CHAT = Chat(
    (
        ("system", "Be brief."),
        ("user", "Hi"),
        ("assistant", "Hello there!"),
        ("user", "And 2+2?"),
        ("assistant", "4"),
    )
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.chat_template = TINY_TEMPLATE
    return tokenizer


def expected(tokenizer, segments):
    """ids and labels built segment by segment: a segment's tokens carry loss or don't."""
    ids, labels = [], []
    for text, loss in segments:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if loss else [IGNORE_INDEX] * len(piece)
    return ids, labels


def test_loss_is_on_each_assistant_turn_and_its_end_marker_token_by_token(tokenizer):
    ids, labels = expected(
        tokenizer,
        [
            ("<|system|>\nBe brief.<eos>\n<|user|>\nHi<eos>\n<|assistant|>\n", False),
            ("Hello there!<eos>", True),
            ("\n<|user|>\nAnd 2+2?<eos>\n<|assistant|>\n", False),
            ("4<eos>", True),
            ("\n", False),
        ],
    )
    text, _ = render_with_spans(tokenizer, CHAT)
    assert ids == tokenizer(text, add_special_tokens=False)["input_ids"]  # the segments tokenize as the whole does
    stream = tokenize_docs(tokenizer, (CHAT,))
    assert stream.ids.tolist() == ids  # no EOS appended: the template ends the conversation
    assert stream.labels.tolist() == labels


def test_tokenizers_without_offsets_get_the_same_tokens_and_mask(tokenizer):
    text, spans = render_with_spans(tokenizer, CHAT)
    assert tokens_by_pieces(tokenizer, text, spans) == chat_tokens(tokenizer, CHAT)


def test_conversational_prompt_completion_trains_on_the_completion_only(tokenizer):
    record = {
        "prompt": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello there!"},
            {"role": "user", "content": "And 2+2?"},
        ],
        "completion": [{"role": "assistant", "content": "4"}],
    }
    doc = record_doc(record, Fields(), key="data", where="x")
    assert isinstance(doc, Chat) and doc.loss_from == 3
    stream = tokenize_docs(tokenizer, (doc,))
    kept = [t for t in stream.labels.tolist() if t != IGNORE_INDEX]
    assert tokenizer.decode(kept) == "4<eos>"


def test_a_template_that_rewrites_earlier_turns_falls_back_to_the_contents(tokenizer):
    tokenizer = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = "{{ messages | length }} messages\n" + TINY_TEMPLATE  # no prefix is stable
    ids, labels = expected(
        tokenizer,
        [
            ("5 messages\n<|system|>\nBe brief.<eos>\n<|user|>\nHi<eos>\n<|assistant|>\n", False),
            ("Hello there!", True),
            ("<eos>\n<|user|>\nAnd 2+2?<eos>\n<|assistant|>\n", False),
            ("4", True),
            ("<eos>\n", False),
        ],
    )
    stream = tokenize_docs(tokenizer, (CHAT,))
    assert stream.ids.tolist() == ids and stream.labels.tolist() == labels


def test_a_tokenizer_without_a_chat_template_names_the_fix(tiny_model):
    from transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(tiny_model)
    with pytest.raises(ValueError, match="has no chat template.*instruct/chat version"):
        tokenize_docs(plain, (CHAT,))


def test_blocks_without_a_token_that_carries_loss_are_left_out():
    ids = torch.arange(12)
    labels = torch.full((12,), IGNORE_INDEX)
    labels[9] = 9  # only the third block of 4 has one (not its first position: that is never predicted)
    blocks = pack(TokenStream(ids, labels), 4)
    assert blocks.ids.tolist() == [[8, 9, 10, 11]]
    labels[4] = 4  # the first position of block two carries nothing predictable
    assert pack(TokenStream(ids, labels), 4).ids.tolist() == [[8, 9, 10, 11]]
    assert len(pack(TokenStream(ids, torch.full((12,), IGNORE_INDEX)), 4)) == 3  # nothing anywhere: all kept


def test_the_token_cache_is_keyed_by_the_chat_template(tokenizer, tmp_path):
    data = write_jsonl(tmp_path / "chat.jsonl", conversations(20))
    corpus = load_corpus(str(data), 0.2)
    first = tokenize_corpus(corpus, tokenizer, tmp_path / "cache")
    other = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    other.chat_template = TINY_TEMPLATE.replace("<|", "[").replace("|>", "]")
    second = tokenize_corpus(corpus, other, tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "tokens").glob("*.pt"))) == 2
    assert not torch.equal(first.train.ids[:50], second.train.ids[:50])


def test_chat_data_on_a_model_without_a_template_is_refused_before_the_run(tiny_model, tmp_path):
    from fitness.qlora import QLoRAFitness

    data = write_jsonl(tmp_path / "chat.jsonl", conversations(10))
    spec = {"type": "qlora", "model": str(tiny_model), "data": str(data), "cache_dir": str(tmp_path / "cache")}
    with pytest.raises(ConfigError, match=r"^fitness\.model: .* has no chat template") as error:
        QLoRAFitness.from_spec(spec)
    assert "\n" not in str(error.value)


def test_the_chat_template_is_part_of_the_fitness_definition(tiny_model, tmp_path):
    from fitness.qlora import QLoRAFitness

    data = write_jsonl(tmp_path / "chat.jsonl", conversations(10))
    spec = {"type": "qlora", "data": str(data), "cache_dir": str(tmp_path / "cache"), "device": "cpu"}
    one = QLoRAFitness.from_spec({**spec, "model": str(chat_model(tiny_model, tmp_path / "a"))})
    two = QLoRAFitness.from_spec({**spec, "model": str(chat_model(tiny_model, tmp_path / "b", "x" + TINY_TEMPLATE))})
    assert one.corpus_identity != two.corpus_identity
    assert one.describe()["data_format"] == "chat" and "automatic split" in one.describe()["data"]


def test_a_chat_trial_trains_and_scores_on_the_assistant_tokens(tiny_model, tmp_path):
    from fitness.qlora import QLoRAFitness

    data = write_jsonl(tmp_path / "chat.jsonl", conversations(60))
    spec = {
        "type": "qlora", "model": str(chat_model(tiny_model, tmp_path / "model")), "data": str(data),
        "cache_dir": str(tmp_path / "cache"), "device": "cpu", "validation_tokens": 256, "eval_seq_length": 64,
    }  # fmt: skip
    with QLoRAFitness.from_spec(spec) as fitness:
        result = fitness.evaluate(Trial(0, {"r": 4, "max_seq_length": 64}, Budget(steps=2), seed=1))
    assert result.ok, result.message
    assert 1.0 < result.values["val_perplexity"] < 1e4
