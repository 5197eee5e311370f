"""The documents a trial trains on and is scored on, read and split once. No torch here.

A document is ``(prompt, completion)`` (the loss is on the completion; plain text has
an empty prompt) or a :class:`Chat` (the loss is on assistant messages, rendered with
the model's chat template in the worker). The validation set is ``validation_data`` /
``validation_split`` when given; otherwise an automatic split, made with a fixed seed by
topic (pydoc), by file (a folder of .txt), by line (.txt) or by record, so validation
text is never trained on. Loading is cheap, so the driver does it to validate the data
and to fingerprint it; ``Corpus.description`` says how it was made, for the report.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from evo.trial import ConfigError
from fitness.qlora.data.records import Chat, Doc, Fields, record_doc
from fitness.qlora.data.settings import DEFAULT_DATA, DataSettings

SPLIT_SEED = 1234  # fixed: every run and every trial sees the same validation documents
MIN_VALIDATION_TOKENS = 128  # fewer and a trial's perplexity is noise (seen: 2 tokens, perplexity 1.4e6)
# Upper bounds of what a document tokenizes to: byte-level and byte-fallback tokenizers spend at
# least one UTF-8 byte a token, a document adds its BOS/EOS, a chat template at most this many a message.
_DOC_SPECIALS, _TEMPLATE_TOKENS = 2, 32
HUB_PREFIX = "hf:"  # data: hf:owner/name reads a hub dataset, even where a local path of that name exists
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name, as the hub spells dataset ids
ACCEPTED = (
    "'pydoc', a .txt file or folder, a .jsonl/.json file, a .parquet/.arrow/.csv file, "
    "a save_to_disk folder, or a hub dataset id (hf:owner/name)"
)

__all__ = ["Chat", "Corpus", "Doc", "Fields", "corpus_for", "load_corpus"]


@dataclass(frozen=True)
class Corpus:
    train: tuple[Doc, ...]
    validation: tuple[Doc, ...]
    identity: str  # sha256 over the split documents
    description: str = ""  # where the documents came from and how validation was chosen

    @property
    def formats(self) -> tuple[str, ...]:
        """The document kinds present: ``chat``, ``prompt_completion``, ``text``."""
        return tuple(sorted({_kind(doc) for doc in self.train + self.validation}))

    @property
    def has_chat(self) -> bool:
        return "chat" in self.formats

    def most_tokens(self) -> tuple[int, int]:
        """At most how many tokens the train and the validation documents hold, whatever the
        tokenizer (see ``token_bound``): what is checked before a run without loading one."""
        return token_bound(self.train), token_bound(self.validation)


def token_bound(docs: Iterable[Doc]) -> int:
    """An upper bound of the tokens ``docs`` tokenize to: their UTF-8 bytes, the specials
    each document adds, and a chat template's most per message."""
    total = 0
    for doc in docs:
        texts = _texts(doc)
        total += sum(len(t.encode()) for t in texts) + _DOC_SPECIALS
        if isinstance(doc, Chat):
            total += _TEMPLATE_TOKENS * len(texts)
    return total


@dataclass(frozen=True)
class _Read:
    docs: list[Doc]
    unit: str  # what one document is: topics, lines, records, ...
    where: str  # the source as the user wrote it, with the split read


def corpus_for(settings: DataSettings, cache_root: Path) -> Corpus:
    """The corpus the settings describe (the driver validates with it, the worker trains on it)."""
    return load_corpus(
        settings.data,
        settings.validation_fraction,
        validation_data=settings.validation_data,
        data_split=settings.data_split,
        validation_split=settings.validation_split,
        data_subset=settings.data_subset,
        fields=settings.fields,
        cache_root=cache_root,
    )


def load_corpus(
    data: str,
    validation_fraction: float,
    *,
    validation_data: str | None = None,
    data_split: str | None = None,
    validation_split: str | None = None,
    data_subset: str | None = None,
    fields: Fields | None = None,
    cache_root: Path | None = None,
) -> Corpus:
    """Read and split the data; empty, missing, unreadable or malformed data is a ConfigError."""
    fields = fields or Fields()
    cache = cache_root / "datasets" if cache_root is not None else None

    def read(source: str, key: str, split: tuple[str | None, str, str]) -> _Read:
        return _read(source, key, fields, split=split, subset=data_subset, cache=cache)

    train = read(data, "data", (data_split, "train", "data_split"))
    if validation_data is None and validation_split is None:
        return _split(train, validation_fraction)
    validation = read(
        validation_data or data,
        "validation_data" if validation_data else "data",
        (validation_split, "validation", "validation_split"),
    )
    for key, part in (("data", train), ("validation_data" if validation_data else "validation_split", validation)):
        if not part.docs:
            raise ConfigError(f"fitness.{key}: {part.where} has no text")
    description = (
        f"train: {len(train.docs)} {train.unit} of {train.where}; validation: {len(validation.docs)} "
        f"{validation.unit} of {validation.where} (given, no automatic split)"
    )
    return _corpus(tuple(train.docs), tuple(validation.docs), description)


def _read(
    source: str, key: str, fields: Fields, *, split: tuple[str | None, str, str], subset: str | None, cache
) -> _Read:
    """The documents of one source. ``split`` is (the split named, the default, the spec key naming it)."""
    from fitness.qlora.data import hfdata

    wanted, default_split, split_key = split

    def rows(name: str, kind: str) -> _Read:
        found, _, split_name = hfdata.dataset_rows(
            name, kind=kind, split=wanted, default_split=default_split, columns=fields.columns,
            key=key, split_key=split_key, subset=subset, cache_dir=cache,
        )  # fmt: skip
        label = name if split_name == "-" else f"{name} [{split_name}]"
        docs = _docs((record_doc(r, fields, key=key, where=f"{label} row {i}") for i, r in enumerate(found)))
        return _Read(docs, "records", label)

    def unsplit(read: _Read) -> _Read:
        if wanted is not None:
            raise ConfigError(f"fitness.{split_key}: {read.where} has no splits, so none named {wanted!r}")
        return read

    if source == DEFAULT_DATA:
        from pydoc_data.topics import topics

        return unsplit(_Read([("", topics[name]) for name in sorted(topics)], "topics", source))
    if source.startswith(HUB_PREFIX):
        return rows(source[len(HUB_PREFIX) :], "hub")
    path = Path(source).expanduser()
    if not path.exists():
        if _HUB_ID.match(source) and not path.suffix:
            try:
                return rows(source, "hub")
            except ConfigError as exc:  # a local path mistyped looks like a hub id too: say both
                if "cannot load the hub dataset" not in str(exc):
                    raise
                raise ConfigError(f"{exc} (and no local path {source} exists)") from None
        raise ConfigError(f"fitness.{key}: {source} does not exist")
    if not path.is_dir() and not path.is_file():  # reading a named pipe would wait for a writer forever
        raise ConfigError(
            f"fitness.{key}: {source} is not a regular file or folder (a named pipe, a device or a socket)"
        )
    if path.is_dir():
        if hfdata.is_saved_dataset(path):
            return rows(str(path), "disk")
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        texts = [("", _text(p, key)) for p in files]
        return unsplit(_Read([d for d in texts if d[1].strip()], ".txt files", source))
    suffix = path.suffix.lower()
    if suffix in hfdata.FILE_BUILDERS:
        return rows(str(path), hfdata.FILE_BUILDERS[suffix])
    if suffix in (".jsonl", ".json"):
        return unsplit(_Read(_json_docs(path, key, fields), "records", source))
    if suffix == ".txt":
        lines = [("", line) for line in _text(path, key).splitlines() if line.strip()]
        return unsplit(_Read(lines, "lines", source))
    raise ConfigError(f"fitness.{key}: {source} is not one of {ACCEPTED}")


def _text(path: Path, key: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"fitness.{key}: cannot read {path}: {exc}") from None


def _json_docs(path: Path, key: str, fields: Fields) -> list[Doc]:
    """A .jsonl file, or a .json file holding a list of records (or JSON lines)."""
    text = _text(path, key)
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"fitness.{key}: {path} is not JSON: {exc}") from None
        return _docs(record_doc(r, fields, key=key, where=f"{path} record {i + 1}") for i, r in enumerate(records))
    docs: list[Doc | None] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"fitness.{key}: {path}:{number} is not JSON: {exc}") from None
        docs.append(record_doc(record, fields, key=key, where=f"{path}:{number}"))
    return _docs(docs)


def _docs(docs: Iterable[Doc | None]) -> list[Doc]:
    return [d for d in docs if d is not None]


def _split(read: _Read, fraction: float) -> Corpus:
    docs = read.docs
    if not docs:
        raise ConfigError(f"fitness.data: {read.where} has no text")
    if len(docs) < 2:
        raise ConfigError(f"fitness.data: {read.where} has only one of its {read.unit}; need 2+ to hold some out")
    order = list(range(len(docs)))
    random.Random(SPLIT_SEED).shuffle(order)
    n_val = min(len(docs) - 1, max(1, round(fraction * len(docs))))
    validation = tuple(docs[i] for i in sorted(order[:n_val]))
    train = tuple(docs[i] for i in sorted(order[n_val:]))
    description = (
        f"{read.where}: {len(docs)} {read.unit}; automatic split: {len(train)} train, {len(validation)} validation "
        f"(validation_fraction {fraction:g} of the {read.unit}, shuffled with seed {SPLIT_SEED})"
    )
    return _corpus(train, validation, description)


def _corpus(train: tuple[Doc, ...], validation: tuple[Doc, ...], description: str) -> Corpus:
    digest = hashlib.sha256()
    for part, docs in (("train", train), ("validation", validation)):
        digest.update(part.encode())
        for doc in docs:
            if isinstance(doc, Chat):  # its own framing; (prompt, completion) bytes are as they always were
                digest.update(f"\2{doc.loss_from}".encode())
                for role, content in doc.messages:
                    digest.update(b"\3" + role.encode() + b"\4" + content.encode())
            else:
                digest.update(b"\0" + doc[0].encode() + b"\1" + doc[1].encode())
    return Corpus(train, validation, digest.hexdigest(), description)


def _kind(doc: Doc) -> str:
    if isinstance(doc, Chat):
        return "chat"
    return "prompt_completion" if doc[0] else "text"


def _texts(doc: Doc) -> tuple[str, ...]:
    return tuple(content for _, content in doc.messages) if isinstance(doc, Chat) else doc
