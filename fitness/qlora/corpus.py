"""The text a trial trains on and is scored on, split once with a fixed seed. No torch here.

A document is ``(prompt, completion)``: the loss covers the completion only; plain
text has an empty prompt. The split is by topic (pydoc), by file (a folder of .txt)
or by line/record (one .txt or .jsonl file), so validation text is never trained on.
Loading is cheap, so the driver does it to validate the data and to fingerprint it.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from evo.trial import ConfigError
from fitness.qlora.spec import DEFAULT_DATA

SPLIT_SEED = 1234  # fixed: every run and every trial sees the same validation documents

Doc = tuple[str, str]  # (prompt, completion)


@dataclass(frozen=True)
class Corpus:
    train: tuple[Doc, ...]
    validation: tuple[Doc, ...]
    identity: str  # sha256 over the split documents

    @property
    def chars(self) -> int:
        return sum(len(p) + len(c) for p, c in self.train + self.validation)


def load_corpus(data: str, validation_fraction: float) -> Corpus:
    """Read and split the data; empty, missing or unreadable data is a ConfigError."""
    if data == DEFAULT_DATA:
        from pydoc_data.topics import topics

        docs = [("", topics[name]) for name in sorted(topics)]
        return _split(docs, validation_fraction, unit="topics", where=data)
    path = Path(data).expanduser()
    if not path.exists():
        raise ConfigError(f"fitness.data: {data} does not exist")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        docs = [("", _read(p)) for p in files]
        return _split([d for d in docs if d[1].strip()], validation_fraction, unit=".txt files", where=data)
    if path.suffix == ".jsonl":
        return _split(_jsonl_docs(path), validation_fraction, unit="records", where=data)
    if path.suffix == ".txt":
        lines = [line for line in _read(path).splitlines() if line.strip()]
        return _split([("", line) for line in lines], validation_fraction, unit="lines", where=data)
    raise ConfigError(f"fitness.data: {data} is not 'pydoc', a .txt file, a folder of .txt or a .jsonl file")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"fitness.data: cannot read {path}: {exc}") from None


def _jsonl_docs(path: Path) -> list[Doc]:
    docs: list[Doc] = []
    for number, line in enumerate(_read(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"fitness.data: {path}:{number} is not JSON: {exc}") from None
        if isinstance(record, dict) and isinstance(record.get("text"), str):
            docs.append(("", record["text"]))
        elif (
            isinstance(record, dict)
            and isinstance(record.get("prompt"), str)
            and isinstance(record.get("completion"), str)
        ):
            docs.append((record["prompt"], record["completion"]))
        else:
            raise ConfigError(f"fitness.data: {path}:{number} needs a 'text' or 'prompt'+'completion' string field")
    return [d for d in docs if d[1].strip()]


def _split(docs: list[Doc], fraction: float, *, unit: str, where: str) -> Corpus:
    if not docs:
        raise ConfigError(f"fitness.data: {where} has no text")
    if len(docs) < 2:
        raise ConfigError(f"fitness.data: {where} has only one of its {unit}; need 2+ to hold some out")
    order = list(range(len(docs)))
    random.Random(SPLIT_SEED).shuffle(order)
    n_val = min(len(docs) - 1, max(1, round(fraction * len(docs))))
    validation = tuple(docs[i] for i in sorted(order[:n_val]))
    train = tuple(docs[i] for i in sorted(order[n_val:]))
    digest = hashlib.sha256()
    for part, split in (("train", train), ("validation", validation)):
        digest.update(part.encode())
        for prompt, completion in split:
            digest.update(b"\0" + prompt.encode() + b"\1" + completion.encode())
    return Corpus(train, validation, digest.hexdigest())
