"""The export's files, made: ``evo best --export FILE --format F`` writes FILE and, beside it,
the training documents (``FILE-data/train.jsonl``), LLaMA-Factory's ``dataset_info.json`` (an
existing one keeps its other entries) and TRL's chat template. The command writes them
through the engine's one write guard, every path checked before any is written (never over
a file of a run directory)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fitness.qlora.export.facts import ExportRequest, installed_transformers, parse_version
from fitness.qlora.export.trainers import merge_beside, trainer_export


def target_transformers(fmt: str, target_version: str | None, python: str | None) -> tuple[int, int] | None:
    """``--target-version``, else the transformers of the trainer's Python, else this one's."""
    if target_version is not None:
        return parse_version(target_version)
    from fitness.qlora.export.check import trainer_python, transformers_of

    found = trainer_python(fmt, python)
    version = transformers_of(found) if found is not None and found.is_file() else None
    return version or installed_transformers()


def export_files(fmt: str, request: ExportRequest) -> dict[Path, str]:
    """The files of the export, the YAML first; dataset_info.json merged with one already there."""
    assert request.out is not None
    export = trainer_export(fmt, request)
    merge_beside(export, {p: p.read_text() for p in export.beside if p.name == "dataset_info.json" and p.is_file()})
    return {request.out.absolute(): export.text(), **export.beside}


def request_for(fmt: str, spec: Mapping[str, Any], config: Mapping[str, Any], **given: Any) -> ExportRequest:
    """The request from what ``evo best`` knows of the run and what the user asked."""
    environment = given.pop("environment", {}) or {}
    data_format = environment.get("data_format")
    device = environment.get("device")  # "cpu:fp32", "NVIDIA H100 80GB HBM3:bf16", ...
    device = None if not isinstance(device, str) else "cpu" if device.startswith("cpu") else "cuda"
    transformers = target_transformers(fmt, given.pop("target_version", None), given.pop("check_python", None))
    return ExportRequest(
        config,
        spec,
        data_format=data_format if isinstance(data_format, str) else None,
        device=device,
        transformers=transformers,
        **given,
    )
