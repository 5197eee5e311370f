"""The documents the trials trained on, written beside the export in a form every trainer reads.

The run's data may be pydoc, a folder of .txt, a hub dataset or a file in fields of the
user's naming; the trainers each read JSON lines with their own column conventions. So
the export writes the train split the trials trained on (not the validation documents)
as ``<export>-data/train.jsonl``, one record a document, in the columns TRL names:
``messages`` (chat), ``text``, or ``prompt`` + ``completion``. The folder holds that one
file, so a folder path is a dataset too (TRL's ``dataset_name``). For the production run,
your full data in the same form goes in its place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evo.trial import ConfigError
from fitness.qlora.export.facts import ExportRequest, one_format

DATA_FILE = "train.jsonl"


@dataclass(frozen=True)
class Dataset:
    """The written documents: ``folder`` holds only ``file``; ``text`` is its JSON lines."""

    folder: Path
    kind: str  # chat, text, prompt_completion
    count: int
    text: str
    source: str  # the run's data, as its config names it

    @property
    def file(self) -> Path:
        return self.folder / DATA_FILE

    @property
    def columns(self) -> tuple[str, ...]:
        return {"chat": ("messages",), "text": ("text",)}.get(self.kind, ("prompt", "completion"))


def data_folder(out: Path) -> Path:
    return out.with_name(f"{out.stem}-data").absolute()


def training_documents(request: ExportRequest) -> Dataset:
    """The train split of the run's data, read as the trials read it; unreadable here: a ConfigError."""
    from fitness.qlora.base.source import default_cache_root
    from fitness.qlora.data.corpus import corpus_for
    from fitness.qlora.data.records import Chat
    from fitness.qlora.spec import QLoRASpec

    if request.out is None:
        raise ConfigError("--format: a trainer file comes with its dataset written beside it: give --export FILE")
    kind = one_format(request)
    spec = QLoRASpec.from_dict(request.spec)
    try:
        corpus = corpus_for(spec.data_settings, default_cache_root(spec.model_settings))
    except ConfigError as exc:
        raise ConfigError(f"{exc} (the export writes the documents the trials trained on)") from None
    records: list[dict[str, Any]] = []
    for doc in corpus.train:
        if isinstance(doc, Chat):
            records.append({"messages": doc.as_dicts()})
        elif kind == "prompt_completion":
            records.append({"prompt": doc[0], "completion": doc[1]})
        else:
            records.append({"text": doc[1]})
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return Dataset(data_folder(request.out), kind, len(records), text, spec.data)


def header(dataset: Dataset) -> str:
    return (
        f"dataset: the {dataset.count} training documents of {dataset.source} the trials trained on "
        f"({dataset.kind}), written to {dataset.file}; your full data in the same form goes there"
    )
