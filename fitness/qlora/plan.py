"""``evo plan`` for the QLoRA fitness: what a run costs before it starts, from the model's config alone.

Answers ``FitnessBase.plan`` (the contract) without building the fitness: no data is read, no
worker starts, no weights are loaded. The model's shape comes from its config.json: a local
model's own, a hub model's from the hub cache, else the copy this package ships
(``base/configs/``), else one request to the hub (the preflight's). Every distinct memory shape
the genes can give (micro-batch x sequence length x gradient checkpointing) is planned at its
worst over the genes that change memory but not the shape (rank, target modules, optimizer,
dropout, compute dtype, double quantization), with the estimate the worker sizes trials with
(``MemoryPlanner``, corrected where this device measured peaks), against the run's device when
its room is known, and against GPUs of ``CARDS_GB``.
"""

from __future__ import annotations

import difflib
import itertools
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evo.trial import Budget, ConfigError, GeneDecl, why_refused
from fitness.qlora.base.architecture import Architecture, read_architecture
from fitness.qlora.base.hub import find_model_config
from fitness.qlora.base.shape import offline_config, shipped_config
from fitness.qlora.base.source import ModelSource, default_cache_root, resolve_model
from fitness.qlora.genes import TrialConfig, genes_for_model, parse_genes
from fitness.qlora.memory.calibration import Calibration
from fitness.qlora.memory.footprint import megabytes
from fitness.qlora.memory.planner import CUDA_CONTEXT_MB, CUDA_USABLE, MemoryPlanner, Room
from fitness.qlora.memory.sizing import cohort_plan
from fitness.qlora.spec import Device, QLoRASpec

if TYPE_CHECKING:
    from evo.trial import Plan, PlanShape

CARDS_GB = (24, 48, 80, 141)  # common GPUs: RTX 4090 and L4-class, A6000 and L40S, A100 and H100, H200
SHAPE_GENES = ("per_device_train_batch_size", "max_seq_length", "gradient_checkpointing")
TOKEN_GENES = ("per_device_train_batch_size", "gradient_accumulation_steps", "max_seq_length")
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Column:
    """A device of the memory table: its room, and the planner whose calibration applies there."""

    name: str
    room: Room
    planner: MemoryPlanner
    device: str  # "cpu" or "cuda": what fitness.cohort: auto means there


def plan(
    spec: Mapping[str, Any], genes: Mapping[str, Sequence[Any]], budget: Budget, baseline: Mapping[str, Any] | None
) -> Plan:
    """The run's cost as :class:`evo.trial.Plan`; ConfigError names a setting or a gene that cannot work."""
    from fitness.qlora.base.model import device_kind, has_fast_bf16, pick_device  # torch, as the shape read is
    from fitness.qlora.training.train import steps_for

    parsed = QLoRASpec.from_dict(spec)
    source, cache_root = resolve_model(parsed.model_settings), default_cache_root(parsed.model_settings)
    architecture, read_from = model_architecture(source, cache_root)
    declared = genes_for_model(architecture.context_length, architecture.linear_modules)
    _check(genes, declared, "")
    _check({k: [v] for k, v in (baseline or {}).items()}, declared, "baseline.")
    defaults = {name: decl.default for name, decl in declared.items()}
    values = {name: list(genes.get(name, [default])) for name, default in defaults.items()}

    gpu = parsed.device is not Device.CPU and _sees_gpu()
    device = "cuda" if gpu or parsed.device is Device.CUDA else "cpu"
    bf16 = has_fast_bf16(device) if gpu or device == "cpu" else True  # no GPU here: any since Ampere has it
    kind = device_kind(parsed.device) if gpu or device == "cpu" else None
    calibration = Calibration.load(cache_root, source.identity, kind) if kind else Calibration(None)
    evaluation = parsed.memory_settings.evaluation
    planner = MemoryPlanner(architecture.shape, evaluation, calibration)
    uncorrected = planner if device == "cuda" else MemoryPlanner(architecture.shape, evaluation, Calibration(None))
    columns = _columns(parsed, planner, uncorrected, device, gpu)

    def trial(config: Mapping[str, Any]) -> TrialConfig:
        merged = {**defaults, **config}
        return parse_genes(merged, lr_scaling=parsed.lr_scaling, lr_reference_batch=parsed.lr_reference_batch)[0]

    def width(cfg: TrialConfig) -> int:
        return DTYPE_BYTES.get(cfg.quant.bnb_4bit_compute_dtype.value, 2 if bf16 else 4)

    def peak(cfg: TrialConfig) -> float:
        return planner.footprint([planner.shape(cfg, width(cfg))]).total

    def row(label: str, cfg: TrialConfig) -> PlanShape:
        footprint = planner.footprint([planner.shape(cfg, width(cfg))])
        fits = [column.planner.fit(cfg, width(cfg), column.room) for column in columns]
        micro = [fit.micro_batch if fit.fits else None for fit in fits]
        return {"shape": label, "peak_mb": footprint.total, "parts": footprint.biggest(), "micro_batch": micro}

    rows, worst_of_all = [], None
    for shape in itertools.product(*(sorted(set(values[name])) for name in SHAPE_GENES)):
        fixed = dict(zip(SHAPE_GENES, shape))
        worst = max((trial({**fixed, **other}) for other in _others(values)), key=peak)
        if worst_of_all is None or peak(worst) > peak(worst_of_all):
            worst_of_all = worst
        rows.append(row(_label(worst), worst))
    reference = trial(baseline) if baseline else worst_of_all
    assert reference is not None  # every gene has a value, so there is a shape
    if baseline:
        rows.append(row(f"baseline {_label(reference)}", reference))
    tokens = [
        steps_for(budget, cfg) * cfg.tokens_per_step
        for cfg in (trial(dict(zip(TOKEN_GENES, v))) for v in itertools.product(*(values[n] for n in TOKEN_GENES)))
    ]
    cohort: list[int | None] = []
    for column in columns:  # trials of the reference's shape trained at once, up to what fitness.cohort allows
        fit = column.planner.fit(reference, width(reference), column.room)
        most = cohort_plan(parsed.memory_settings, column.device).cap
        shapes = [column.planner.shape(reference, width(reference), fit.split)] * most
        cohort.append(column.planner.capacity(shapes, column.room) if fit.fits else None)
    base = planner.estimated([planner.shape(reference, width(reference))]).base
    if device == "cuda" and not gpu:
        where = "cuda, and this machine has no GPU"
    else:
        where = ("auto: " if parsed.device is Device.AUTO else "") + pick_device(parsed.device)
    dtype = "bfloat16" if bf16 else "float32"
    quant = reference.quant
    about = [
        f"model {parsed.model}: its shape read from {read_from}, no weights",
        f"fitness.device {where}; compute dtype auto means {dtype} there",
        f"the 4-bit base: about {megabytes(base)} ({quant.bnb_4bit_quant_type.value}, "
        f"{'double' if quant.bnb_4bit_use_double_quant else 'single'} quantization, "
        f"{dtype if quant.bnb_4bit_compute_dtype.value == 'auto' else quant.bnb_4bit_compute_dtype.value} compute, "
        f"as the {'baseline' if baseline else 'largest shape'})",
    ]
    seconds = _seconds(calibration, [min(tokens), max(tokens)], parsed, budget)
    return {
        "about": about,
        "tokens_per_trial": [min(tokens), max(tokens)],
        "seconds_per_trial": seconds,
        "devices": [column.name for column in columns],
        "shapes": rows,
        "cohort": cohort,
        "notes": _notes(calibration, kind, gpu, device, bool(baseline)),
    }


def model_architecture(source: ModelSource, cache_root: Path) -> tuple[Architecture, str]:
    """The model's architecture and where its config was read; nothing is written, no weights read."""
    if source.is_local:
        where, config_file = "its config" if source.gguf_file is None else "its GGUF's header", None
    else:
        config_file = offline_config(source.name_or_path)
        if config_file is not None:
            shipped = config_file == shipped_config(source.name_or_path)
            where = "the config.json shipped with evo-qlora" if shipped else "the hub cache"
        elif source.gguf_file:  # its config is inside the file: reading it means downloading the GGUF
            raise ConfigError(
                f"fitness.model: a plan reads the shape of {source.name_or_path} from {source.gguf_file}, "
                f"which is not here: download it first (hf download {source.name_or_path} {source.gguf_file})"
            )
        else:
            where, config_file = "the hub (its config.json)", find_model_config(source, cache_root)
    found = read_architecture(source, cache_root, config_file, save=False)
    if found is None or found.shape is None:
        raise ConfigError(f"fitness.model: the config of {source.name_or_path} cannot be read: nothing to plan from")
    return found, where


def _check(genes: Mapping[str, Sequence[Any]], declared: Mapping[str, GeneDecl], section: str) -> None:
    """Every gene is one the fitness reads and every value one it accepts, or a one-line ConfigError."""
    for name, values in genes.items():
        if name not in declared:
            close = difflib.get_close_matches(name, list(declared), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"it reads: {', '.join(sorted(declared))}"
            raise ConfigError(f"{section}{name}: the qlora fitness has no gene {name!r} ({hint})")
        for value in values:
            problem = why_refused(declared[name], value)
            if problem is not None:
                raise ConfigError(f"{section}{name}={value!r}: {problem}")


def _others(values: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """The candidates for a shape's worst case: the largest rank and dropout, the double quantization
    off if it can be (a larger base), and every target set, optimizer and compute dtype."""
    single = {"r": max(values["r"]), "lora_dropout": max(values["lora_dropout"])}
    single["bnb_4bit_use_double_quant"] = min(values["bnb_4bit_use_double_quant"])
    several = ("target_modules", "optim", "bnb_4bit_compute_dtype")
    return [{**single, **dict(zip(several, combo))} for combo in itertools.product(*(values[n] for n in several))]


def _label(cfg: TrialConfig) -> str:
    checkpointing = ", checkpointing" if cfg.gradient_checkpointing else ""
    return f"{cfg.per_device_train_batch_size} x {cfg.max_seq_length}{checkpointing}"


def _sees_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _columns(
    spec: QLoRASpec, planner: MemoryPlanner, uncorrected: MemoryPlanner, device: str, gpu: bool
) -> list[Column]:
    """The run's device first when its room is known (a limit, or the GPU here), then GPUs of each size."""
    columns = []
    if spec.memory_limit_mb is not None:
        columns.append(Column(f"limit {spec.memory_limit_mb:g} MB", Room.limit(spec.memory_limit_mb), planner, device))
    elif gpu:
        import torch

        free, total = (n / 2**20 for n in torch.cuda.mem_get_info())
        name = f"this GPU ({total / 1024:.0f} GB)"
        room = Room(free, True, f"{CUDA_USABLE:.0%} of the {megabytes(free)} free on this GPU", CUDA_USABLE)
        columns.append(Column(name, room, planner, device))
    return columns + [Column(f"{gb} GB", Room.card(gb), uncorrected, "cuda") for gb in CARDS_GB]


def _seconds(calibration: Calibration, tokens: list[int], spec: QLoRASpec, budget: Budget) -> list[float] | None:
    """Device seconds a trial takes, from the median measured speeds of this model on this device."""
    speeds = calibration.speeds()
    evals = [r["eval_tokens_per_s"] for r in speeds if r.get("eval_tokens_per_s")]
    if not speeds or not evals:
        return None
    train, scoring = statistics.median(r["train_tokens_per_s"] for r in speeds), statistics.median(evals)
    validation = spec.validation_tokens / scoring  # at the end, and every eval_every steps of a steps budget
    during = budget.steps // spec.eval_every if spec.eval_every and budget.steps else 0
    return [n / train + validation * (1 + during) for n in tokens]


def _notes(calibration: Calibration, kind: str | None, gpu: bool, device: str, baseline: bool) -> list[str]:
    notes = []
    if device == "cuda" and not gpu:
        notes.append("no GPU here: the columns are GPUs of each size, which the run's GPU will be one of")
    notes.append(
        f"a GPU of N GB: N GiB less {CUDA_CONTEXT_MB:.0f} MB of CUDA context; {CUDA_USABLE:.0%} of what the base "
        "leaves is planned (the allocator's fragmentation and the kernels' workspaces need the rest)"
    )
    if not baseline:
        notes.append("no baseline in the config: the cohort line is for the largest shape")
    if kind is not None and calibration.records:
        notes.append(
            f"estimates corrected by {len(calibration.records)} cohorts measured on {kind} ({calibration.path})"
        )
    elif kind is not None:
        notes.append(f"no peak measured for this model on {kind} yet: a run records them in {calibration.path}")
    return notes
