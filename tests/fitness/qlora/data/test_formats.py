"""Every data format the QLoRA fitness reads, written by the tests: the same documents from each,
column mapping, the user's own validation split, hub ids (offline), and each malformed input
as one line and exit 2 from `evo run`, before anything is written."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from evo.cli import main
from evo.trial import ConfigError
from fitness.qlora.data.corpus import load_corpus
from fitness.qlora.data.records import Chat, Fields
from tests.fitness.qlora.chatdata import conversations, write_jsonl

datasets = pytest.importorskip("datasets")

PAIRS = [{"prompt": f"Question {i}: ", "completion": f"answer number {i}"} for i in range(12)]


def as_dataset(records):
    return datasets.Dataset.from_list(records)


def test_each_file_format_gives_the_same_documents(tmp_path):
    chats = conversations(12)
    expected = load_corpus(str(write_jsonl(tmp_path / "chat.jsonl", chats)), 0.25)
    (tmp_path / "chat.json").write_text(json.dumps(chats))
    as_dataset(chats).to_parquet(str(tmp_path / "chat.parquet"))
    as_dataset(chats).save_to_disk(str(tmp_path / "saved"))
    stream = tmp_path / "chat.arrow"
    import pyarrow as pa

    table = as_dataset(chats).data.table
    with pa.OSFile(str(stream), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    for source in ("chat.json", "chat.parquet", "chat.arrow", "saved"):
        corpus = load_corpus(str(tmp_path / source), 0.25, cache_root=tmp_path / "cache")
        assert (corpus.train, corpus.validation) == (expected.train, expected.validation), source
    assert expected.formats == ("chat",) and isinstance(expected.train[0], Chat)
    # CSV holds no lists: text and prompt/completion
    as_dataset(PAIRS).to_csv(str(tmp_path / "pairs.csv"), index=False)
    from_csv = load_corpus(str(tmp_path / "pairs.csv"), 0.25, cache_root=tmp_path / "cache")
    from_jsonl = load_corpus(str(write_jsonl(tmp_path / "pairs.jsonl", PAIRS)), 0.25)
    assert from_csv.train == from_jsonl.train and from_csv.formats == ("prompt_completion",)


def test_columns_are_mapped_by_the_field_keys(tmp_path):
    rows = [
        {"q": f"Q{i} ", "a": f"A{i}", "body": f"text {i}", "chat": c["messages"]}
        for i, c in enumerate(conversations(8))
    ]
    as_dataset(rows).to_parquet(str(tmp_path / "rows.parquet"))
    path, cache = str(tmp_path / "rows.parquet"), tmp_path / "cache"
    pairs = load_corpus(
        path, 0.25, fields=Fields(prompt="q", completion="a", text="body", messages="none"), cache_root=cache
    )
    assert pairs.formats == ("prompt_completion",) and pairs.train[0][0].startswith("Q")
    text = load_corpus(path, 0.25, fields=Fields(text="body", messages="none", prompt="none"), cache_root=cache)
    assert text.formats == ("text",)
    chat = load_corpus(path, 0.25, fields=Fields(messages="chat"), cache_root=cache)
    assert chat.formats == ("chat",)


def test_the_users_validation_set_replaces_the_automatic_split_and_both_are_reported(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", conversations(20, seed=1))
    validation = write_jsonl(tmp_path / "val.jsonl", conversations(5, seed=2))
    given = load_corpus(str(train), 0.25, validation_data=str(validation))
    assert (len(given.train), len(given.validation)) == (20, 5)
    assert "validation: 5 records of" in given.description and "no automatic split" in given.description
    automatic = load_corpus(str(train), 0.25)
    assert (len(automatic.train), len(automatic.validation)) == (15, 5)
    assert "automatic split: 15 train, 5 validation (validation_fraction 0.25" in automatic.description
    assert "seed 1234" in automatic.description
    assert automatic.identity != given.identity


def test_splits_of_a_saved_dataset_dict(tmp_path):
    splits = {"train": conversations(10, seed=1), "test": conversations(4, seed=2), "extra": conversations(3, seed=3)}
    datasets.DatasetDict({k: as_dataset(v) for k, v in splits.items()}).save_to_disk(str(tmp_path / "dd"))
    path = str(tmp_path / "dd")
    corpus = load_corpus(path, 0.2, validation_split="test")
    assert (len(corpus.train), len(corpus.validation)) == (10, 4) and "[test]" in corpus.description
    other = load_corpus(path, 0.2, data_split="extra", validation_data=path, validation_split="test")
    assert (len(other.train), len(other.validation)) == (3, 4)
    assert len(load_corpus(path, 0.2).train) == 8  # the train split, split automatically


def asked_hub(monkeypatch) -> list:
    """The hub check before load_dataset, recorded instead of asked (base/test_hub.py asks a fake hub)."""
    from fitness.qlora.base import hub

    asked: list = []
    monkeypatch.setattr(
        hub, "check_dataset", lambda repo, **named: asked.append((repo, named["subset"], named["split"]))
    )
    return asked


def test_a_hub_id_goes_to_load_dataset_with_its_subset_and_split(tmp_path, monkeypatch):
    calls, asked = [], asked_hub(monkeypatch)

    def offline_hub(name, subset=None, **kwargs):
        calls.append((name, subset))
        return datasets.DatasetDict(train=as_dataset(conversations(10)), validation=as_dataset(conversations(3)))

    monkeypatch.setattr(datasets, "load_dataset", offline_hub)
    corpus = load_corpus("someone/chats", 0.2, validation_split="validation", data_subset="en")
    assert calls == [("someone/chats", "en"), ("someone/chats", "en")]
    assert asked == [("someone/chats", "en", None), ("someone/chats", "en", "validation")]  # the hub first, each time
    assert (len(corpus.train), len(corpus.validation)) == (10, 3)
    load_corpus("hf:someone/chats", 0.2)
    assert calls[-1] == ("someone/chats", None)


def test_an_unreachable_hub_dataset_is_one_line(monkeypatch):
    asked_hub(monkeypatch)  # the hub answered; load_dataset then failed

    def unreachable(name, subset=None, **kwargs):
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(ConfigError, match=r"^fitness\.data: cannot load the hub dataset someone/chats: Conn") as error:
        load_corpus("someone/chats", 0.2)
    assert "\n" not in str(error.value)


def test_without_the_datasets_library_the_error_names_the_extra(tmp_path, monkeypatch):
    as_dataset(PAIRS).to_parquet(str(tmp_path / "pairs.parquet"))
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets now raises ImportError
    with pytest.raises(ConfigError, match=r"fitness\.data: reading .* needs pip install 'evo-qlora\[data\]'"):
        load_corpus(str(tmp_path / "pairs.parquet"), 0.2)


# -- malformed input through `evo run`: one line, exit 2, nothing written --------------------
def chat_with(*messages):
    return {"messages": list(messages)}


USER = {"role": "user", "content": "hi"}
ASSISTANT = {"role": "assistant", "content": "hello"}
GOOD = chat_with(USER, ASSISTANT)

MALFORMED = [
    # (name, file name, content or records, extra fitness keys, what the one line must say)
    ("missing-field", "d.jsonl", [GOOD, {"question": "x"}], {}, "d.jsonl:2 needs a 'text' string"),
    ("wrong-role", "d.jsonl", [GOOD, chat_with(USER, {"role": "bot", "content": "x"})], {}, "role 'bot'"),
    ("empty-conversation", "d.jsonl", [GOOD, {"messages": []}], {}, "d.jsonl:2 is an empty conversation"),
    ("message-not-object", "d.jsonl", [GOOD, {"messages": ["hi"]}], {}, "message 1 is a str"),
    ("content-not-string", "d.jsonl", [GOOD, chat_with(USER, {"role": "assistant", "content": 3})], {}, "no 'content'"),
    ("no-role", "d.jsonl", [GOOD, chat_with({"content": "x"}, ASSISTANT)], {}, "message 1 has no 'role'"),
    ("no-assistant", "d.jsonl", [GOOD, chat_with(USER)], {}, "no assistant message to train on"),
    ("messages-not-list", "d.jsonl", [GOOD, {"messages": "hi"}], {}, "not a list of {role, content}"),
    ("record-not-object", "d.json", "[1, 2]", {}, "d.json record 1 is a int"),
    ("json-broken", "d.json", "[{", {}, "d.json is not JSON"),
    ("unknown-suffix", "d.xml", "<a/>", {}, "is not one of 'pydoc'"),
    ("mapped-field-missing", "d.jsonl", [GOOD, GOOD], {"messages_field": "conversation"}, "(messages_field)"),
    ("empty-field-key", "d.jsonl", [GOOD, GOOD], {"text_field": ""}, "fitness.text_field"),
    ("split-of-a-file", "d.jsonl", [GOOD, GOOD], {"validation_split": "test"}, "fitness.validation_split"),
    (
        "missing-validation",
        "d.jsonl",
        [GOOD, GOOD],
        {"validation_data": "/nonexistent/v.jsonl"},
        "fitness.validation_data",
    ),
    ("chat-without-template", "d.jsonl", [GOOD, GOOD], {}, "fitness.model: the tokenizer of"),
]


@pytest.fixture(scope="module")
def run_config(tiny_model, tmp_path_factory):
    return {
        "seed": 0,
        "fitness": {
            "type": "qlora",
            "model": str(tiny_model),
            "device": "cpu",
            "cache_dir": str(tmp_path_factory.mktemp("c")),
        },
        "budget": {"steps": 2},
        "evolution": {"population_size": 2, "generations": 0},
        "search_space": {"learning_rate": {"type": "log_float", "low": 1e-4, "high": 1e-2}},
        "fixed": {"max_seq_length": 64},
    }


@pytest.mark.parametrize("case", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_data_is_one_line_and_exit_2(case, run_config, tmp_path, capsys):
    _, name, content, extra, says = case
    data = tmp_path / name
    data.write_text(content if isinstance(content, str) else "".join(json.dumps(r) + "\n" for r in content))
    config = {**run_config, "fitness": {**run_config["fitness"], "data": str(data), **extra}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    code = main(["run", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "out"), "--quiet", "--no-plots"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("evo: error: fitness.") and says in err[0], err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no run directory
