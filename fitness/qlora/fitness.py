"""QLoRAFitness: validation perplexity of a QLoRA adapter trained under a fixed budget."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from evo.trial import Budget, ConfigError, Fitness, FitnessBase, GeneDecl, Objective, Trial, TrialResult
from fitness.qlora.base.architecture import read_architecture
from fitness.qlora.base.hub import find_model_config
from fitness.qlora.base.source import ModelSource, check_cache_root, resolve_model
from fitness.qlora.data.chat import check_chat_data
from fitness.qlora.data.corpus import MIN_VALIDATION_TOKENS, Corpus, corpus_for
from fitness.qlora.export import split_sections
from fitness.qlora.genes import GENES, STRUCTURAL_GENES, genes_for_model
from fitness.qlora.spec import OBJECTIVES, Device, QLoRASpec
from fitness.qlora.worker.supervisor import WorkerSupervisor

if TYPE_CHECKING:
    from evo.trial import Plan

FITNESS_VERSION = 2  # bump when the loop or scoring changes what a number means (2: cohort loop, own dropout RNG)


class QLoRAFitness(FitnessBase):
    """Trains each trial's LoRA adapter on a resident 4-bit base in a worker subprocess.

    Cheap to build: ``from_spec`` validates the spec, finds the model, reads the data and
    the model's config (raising ConfigError), but starts the worker only at the first
    ``evaluate``. ``genes`` are GENES narrowed to the model (its module names, its context).
    ``structural_genes`` are those a trial continuing a checkpoint cannot change.
    """

    structural_genes = STRUCTURAL_GENES

    def __init__(
        self, spec: QLoRASpec, *, source: ModelSource, corpus: Corpus, genes: Mapping[str, GeneDecl] = GENES
    ) -> None:
        self.spec = spec
        self._genes = dict(genes)  # a plain dict, so the fitness still pickles
        self.objectives: tuple[Objective, ...] = tuple(Objective(name, OBJECTIVES[name]) for name in spec.objectives)
        # trials validate during training every eval_every steps, and where early stopping judges them
        self.intermediate_values = True
        self.source = source
        self.corpus_identity = corpus.identity
        self.data_summary = {"data": corpus.description, "data_format": "+".join(corpus.formats)}
        self.data_tokens = corpus.most_tokens()  # (train, validation), at most
        self._worker = WorkerSupervisor(spec.worker_settings)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> QLoRAFitness:
        parsed = QLoRASpec.from_dict(spec)
        if parsed.device is Device.CUDA:
            _check_cuda()
        source, cache_root = resolve_model(parsed.model_settings), check_cache_root(parsed.model_settings)
        # a hub model first: a missing, gated or unreachable one is refused in seconds, before the data is read
        config_file = None if source.is_local else find_model_config(source, cache_root)
        corpus = check_chat_data(corpus_for(parsed.data_settings, cache_root), source, cache_root, parsed.model)
        return cls._built(parsed, source, corpus, read_architecture(source, cache_root, config_file))

    @classmethod
    def for_plan(cls, spec: Mapping[str, Any]) -> QLoRAFitness:
        """The fitness as ``from_spec`` builds it, checked as a run checks it, minus what only the
        machine that runs it can tell (``evo plan`` plans a GPU run on a laptop): a GPU is not
        required, and the model's shape is read as the plan reads it (a config shipped with
        evo-qlora, the hub cache), writing nothing. The data is read as a run reads it."""
        from fitness.qlora.plan import model_architecture  # imports torch, so only here

        parsed = QLoRASpec.from_dict(spec)
        source, cache_root = resolve_model(parsed.model_settings), check_cache_root(parsed.model_settings)
        model, _ = model_architecture(source, cache_root)
        return cls._built(parsed, source, corpus_for(parsed.data_settings, cache_root), model)

    @classmethod
    def _built(cls, parsed: QLoRASpec, source: ModelSource, corpus: Corpus, model: Any) -> QLoRAFitness:
        if model is None:
            return cls(parsed, source=source, corpus=corpus)
        if model.context_length is not None and parsed.eval_seq_length > model.context_length:
            raise ConfigError(
                f"fitness.eval_seq_length: {parsed.eval_seq_length} is longer than the model's context "
                f"({model.context_length} tokens)"
            )
        genes = genes_for_model(model.context_length, model.linear_modules)
        return cls(parsed, source=source, corpus=corpus, genes=genes)

    def check_trials(self, genes: Mapping[str, Sequence[Any]], budget: Budget) -> None:
        """Refuse data too small for the run: a validation set under MIN_VALIDATION_TOKENS, or a
        training split under one batch (per_device_train_batch_size x max_seq_length tokens) of
        the run's smallest trial. Counted without a tokenizer, as an upper bound (bytes), so
        only data that is too small for certain is refused."""
        train, validation = self.data_tokens
        where = f"fitness.{'validation_data' if self.spec.validation_data else 'data'}"
        if validation < MIN_VALIDATION_TOKENS:
            raise ConfigError(
                f"{where}: the validation set holds at most {validation} tokens; scoring a trial needs "
                f"{MIN_VALIDATION_TOKENS} or more (give more data, a larger validation_fraction, or validation_data)"
            )

        def smallest(name: str) -> int:
            return int(min(genes.get(name) or [self._genes[name].default]))

        batch, length = smallest("per_device_train_batch_size"), smallest("max_seq_length")
        if train < batch * length:
            raise ConfigError(
                f"fitness.data: the training split holds at most {train} tokens, fewer than one batch of the "
                f"smallest trial (per_device_train_batch_size {batch} x max_seq_length {length}); give more data"
            )

    @property
    def genes(self) -> Mapping[str, GeneDecl]:  # type: ignore[override]  # read-only per instance
        return MappingProxyType(self._genes)

    @property
    def worker_pid(self) -> int | None:
        """The current worker's process id (None before the first trial or after close)."""
        return self._worker.pid

    def fingerprint(self) -> str:
        from fitness.qlora.base.model import device_kind  # imports torch, so only here

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

        from fitness.qlora.base.model import device_kind

        env: dict[str, Any] = {"model": self.source.name_or_path, "device": device_kind(self.spec.device)}
        if self.source.gguf_file:
            env["gguf_file"] = self.source.gguf_file
        env.update(self.data_summary)  # how the validation set was made; evo best --export reads the format
        for package in ("torch", "transformers", "peft", "bitsandbytes"):
            try:
                env[package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                pass
        return env

    def visible_devices(self) -> tuple[str, ...]:
        """The CUDA devices this machine shows (none when ``fitness.device`` is cpu)."""
        if self.spec.device is Device.CPU:
            return ()
        from fitness.qlora.worker.devices import visible_cuda_devices  # imports torch, so only here

        return visible_cuda_devices()

    def for_device(self, label: str) -> Fitness:
        """This fitness with a worker of its own, started with ``CUDA_VISIBLE_DEVICES=label``."""
        pinned = copy.copy(self)
        pinned._genes = dict(self._genes)
        pinned._worker = WorkerSupervisor(self.spec.worker_settings, device=label)
        return pinned

    @property
    def batch_capacity(self) -> int:  # type: ignore[override]  # depends on the spec and the device
        """Trials handed to the worker at once: ``fitness.cohort`` (auto: see ``sizing.cohort_plan``)."""
        from fitness.qlora.memory.sizing import cohort_plan

        if self.spec.cohort == "auto" and self.spec.device is Device.AUTO:
            from fitness.qlora.base.model import pick_device  # imports torch, so only here

            device = pick_device(self.spec.device)
        else:
            device = "cpu" if self.spec.device is Device.AUTO else self.spec.device.value
        return cohort_plan(self.spec.memory_settings, device).cap

    def evaluate(self, trial: Trial) -> TrialResult:
        return self.evaluate_batch([trial])[0]

    def evaluate_batch(self, trials: Sequence[Trial]) -> list[TrialResult]:
        """Trials sharing the base and the block shape train as a cohort in one forward (``train.py``)."""
        return self._worker.evaluate_batch([self._with_model_defaults(trial) for trial in trials])

    def _with_model_defaults(self, trial: Trial) -> Trial:
        # a model that can't take GENES' default of a gene (no q_proj, a short context) gets its own
        own = {k: d.default for k, d in self._genes.items() if k not in trial.config and d.default != GENES[k].default}
        return replace(trial, config={**trial.config, **own}) if own else trial

    @staticmethod
    def export_sections(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """The config in sections that load into TrainingArguments, LoraConfig and BitsAndBytesConfig."""
        return split_sections(config)

    @staticmethod
    def plan(
        spec: Mapping[str, Any],
        genes: Mapping[str, Sequence[Any]],
        budget: Budget,
        baseline: Mapping[str, Any] | None,
    ) -> Plan:
        """What a run costs before it starts, from the model's config alone (``plan.py``)."""
        from fitness.qlora.plan import plan  # imports torch, so only here

        return plan(spec, genes, budget, baseline)

    def close(self) -> None:
        self._worker.close()

    def __enter__(self) -> QLoRAFitness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_cuda() -> None:
    """``device: cuda`` where torch sees no GPU is refused before any worker starts. Counting
    the devices asks NVML (torch.cuda.device_count), so no CUDA context is made in the driver."""
    from fitness.qlora.worker import devices  # imports torch, so only here

    if devices.visible_cuda_devices():
        return
    import torch

    build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", a build without CUDA")
    shown = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = "" if shown is None else f", CUDA_VISIBLE_DEVICES={shown!r}"
    raise ConfigError(f"fitness.device: cuda, but torch sees no GPU ({build}{visible}); use device: auto or cpu")
