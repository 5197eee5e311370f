"""QLoRAFitness: validation perplexity of a QLoRA adapter trained under a fixed budget."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from evo.trial import FitnessBase, GeneDecl, Objective, Trial, TrialResult
from fitness.qlora.corpus import Corpus, load_corpus
from fitness.qlora.export import split_sections
from fitness.qlora.genes import GENES, STRUCTURAL_GENES
from fitness.qlora.source import ModelSource, resolve_model
from fitness.qlora.spec import OBJECTIVES, QLoRASpec
from fitness.qlora.worker import TrialWorker

FITNESS_VERSION = 1  # bump when the loop or scoring changes what a number means


class QLoRAFitness(FitnessBase):
    """Trains each trial's LoRA adapter on a resident 4-bit base in a worker subprocess.

    Cheap to build: ``from_spec`` validates the spec, finds the model and reads the
    data (raising ConfigError), but starts the worker only at the first ``evaluate``.
    ``structural_genes`` are those a trial continuing a checkpoint cannot change.
    """

    structural_genes = STRUCTURAL_GENES
    genes: Mapping[str, GeneDecl] = GENES

    def __init__(self, spec: QLoRASpec, *, source: ModelSource, corpus: Corpus) -> None:
        self.spec = spec
        self.objectives: tuple[Objective, ...] = tuple(Objective(name, OBJECTIVES[name]) for name in spec.objectives)
        # trials validate during training only with eval_every, which the median stopping rule needs
        self.intermediate_values = spec.eval_every > 0
        self.source = source
        self.corpus_identity = corpus.identity
        self._worker = TrialWorker(spec)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> QLoRAFitness:
        parsed = QLoRASpec.from_dict(spec)
        return cls(parsed, source=resolve_model(parsed), corpus=load_corpus(parsed.data, parsed.validation_fraction))

    @property
    def worker_pid(self) -> int | None:
        """The current worker's process id (None before the first trial or after close)."""
        return self._worker.pid

    def fingerprint(self) -> str:
        from fitness.qlora.model import device_kind  # imports torch, so only here

        spec = self.spec
        # not the objectives: they choose which measures are reported, not what val_perplexity means
        identity = {
            "fitness": "qlora",
            "version": FITNESS_VERSION,
            "model": self.source.identity,
            "data": self.corpus_identity,
            "validation_fraction": spec.validation_fraction,
            "validation_tokens": spec.validation_tokens,
            "eval_seq_length": spec.eval_seq_length,
            "device": device_kind(spec.device),
            "lr_scaling": spec.lr_scaling.value,
            "lr_reference_batch": spec.lr_reference_batch,
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        """Model, device and library versions, for the run's report."""
        from importlib import metadata

        from fitness.qlora.model import device_kind

        env: dict[str, Any] = {"model": self.source.name_or_path, "device": device_kind(self.spec.device)}
        if self.source.gguf_file:
            env["gguf_file"] = self.source.gguf_file
        for package in ("torch", "transformers", "peft", "bitsandbytes"):
            try:
                env[package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                pass
        return env

    def evaluate(self, trial: Trial) -> TrialResult:
        return self._worker.evaluate(trial)

    @staticmethod
    def export_sections(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """The config in sections that load into TrainingArguments, LoraConfig and BitsAndBytesConfig."""
        return split_sections(config)

    def close(self) -> None:
        self._worker.close()

    def __enter__(self) -> QLoRAFitness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
