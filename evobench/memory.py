"""The memory estimate (``fitness/qlora/memory/footprint.py``) checked against measured peaks, on the CPU.

Each case is a cohort (one trial, or two to four trained together) of genes that a trial's
memory depends on. The cases of one model run one after another in one spawned worker
process, as the fitness runs trials: ``TrialRunner`` (the fitness's own worker side) loads the
4-bit base and the data once, and trains each cohort for ``STEPS`` optimizer steps and scores
it. A case's measured peak is the worker's peak RSS during the cohort (VmHWM, reset when the
cohort starts: ``fitness/qlora/memory/process.py``) over its RSS just before, with freed heap
handed back first; its estimate is ``estimate()``'s trials' parts (the base is resident in both).
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evo.trial import Budget, Trial

TINY, SMOLLM2 = "tiny-llama", "smollm2-135m"
STEPS = 2  # the second step is the first with the optimizer's state allocated
GOAL_PCT = 25.0  # the estimate is to be within this of the measured peak
FLOAT32 = {"bnb_4bit_compute_dtype": "float32"}  # the CPU's dtype here; one base for every case
WARM_UP = {"r": 4, "max_seq_length": 32, "per_device_train_batch_size": 1}  # the first trial's one-time costs

ATTN, MLP, ALL = "attention", "mlp", "all-linear"


@dataclass(frozen=True)
class Case:
    """One cohort: ``trials`` holds each member's genes (``FLOAT32`` and the defaults fill the rest)."""

    name: str
    trials: tuple[Mapping[str, Any], ...]


def _shape(mb: int, seq: int, r: int, targets: str, **more: Any) -> dict[str, Any]:
    return {"per_device_train_batch_size": mb, "max_seq_length": seq, "r": r, "target_modules": targets, **more}


def _one(name: str, **genes: Any) -> Case:
    return Case(name, (genes,))


# The tiny Llama is small enough that shapes must be large for its peaks to rise above the
# allocator's noise (a few MB): long sequences, wide micro-batches.
TINY_CASES = (
    _one("16x512 r8 attention", **_shape(16, 512, 8, ATTN)),
    _one("16x512 r64 all-linear", **_shape(16, 512, 64, ALL)),
    _one("16x512 r64 all-linear ckpt", **_shape(16, 512, 64, ALL, gradient_checkpointing=True)),
    _one("32x256 r16 mlp 8-bit", **_shape(32, 256, 16, MLP, optim="adamw_bnb_8bit")),
    _one("16x512 r16 attention adafactor", **_shape(16, 512, 16, ATTN, optim="adafactor")),
    _one("32x512 r32 all-linear no dropout", **_shape(32, 512, 32, ALL, lora_dropout=0.0)),
    Case("cohort 2 x 16x512", (_shape(16, 512, 8, ATTN), _shape(16, 512, 64, ALL))),
    Case("cohort 4 x 8x512", tuple(_shape(8, 512, r, ALL) for r in (4, 8, 16, 32))),
)
QUICK_CASES = (TINY_CASES[0], TINY_CASES[2], TINY_CASES[6])
SMOLLM2_CASES = (
    _one("4x128 r16 attention", **_shape(4, 128, 16, ATTN)),
    _one("4x256 r64 all-linear", **_shape(4, 256, 64, ALL)),
    _one("4x256 r64 all-linear ckpt", **_shape(4, 256, 64, ALL, gradient_checkpointing=True)),
    _one("8x256 r16 mlp 8-bit", **_shape(8, 256, 16, MLP, optim="adamw_bnb_8bit")),
    _one("8x128 r8 attention adafactor", **_shape(8, 128, 8, ATTN, optim="adafactor")),
    _one("8x512 r32 all-linear no dropout", **_shape(8, 512, 32, ALL, lora_dropout=0.0)),
    Case("cohort 2 x 4x256", (_shape(4, 256, 16, ATTN), _shape(4, 256, 64, ALL))),
    Case("cohort 4 x 2x256", tuple(_shape(2, 256, r, ALL) for r in (4, 8, 16, 32))),
)


@dataclass(frozen=True)
class Measurement:
    model: str
    case: str
    estimated_mb: float  # the trials' parts, over the resident base
    measured_mb: float  # peak RSS over the RSS before the cohort
    parts: dict[str, float] = field(default_factory=dict)  # the estimate's parts, MB
    base_mb: float = 0.0  # the estimate of the resident base, for the table's reader

    @property
    def error_pct(self) -> float:
        """(estimated - measured) / measured: positive when the estimate is too high."""
        return 100.0 * (self.estimated_mb - self.measured_mb) / self.measured_mb


def spec_for(model: str, cache_dir: Path, **more: Any) -> dict[str, Any]:
    """The fitness spec the cases run under: the CPU, cohorts as the cases give them, a short validation."""
    return {
        "model": model,
        "data": "pydoc",
        "device": "cpu",
        "cache_dir": str(cache_dir),
        "validation_tokens": 2048,
        "eval_seq_length": 256,
        "eval_batch_size": 8,
        "cohort": 4,
        "trial_timeout": 3600,
        **more,
    }


def measure(
    spec: Mapping[str, Any], cases: Sequence[Case], label: str, *, timeout_s: float = 3600
) -> list[Measurement]:
    """Run ``cases`` in one spawned worker under ``spec``; a measurement for each, in order."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    worker = context.Process(target=_serve, args=(send, dict(spec), list(cases), label, os.getpid()), daemon=True)
    worker.start()
    send.close()
    out: list[Measurement] = []
    try:
        while len(out) < len(cases):
            if not receive.poll(timeout_s):
                raise TimeoutError(f"{label}: no answer within {timeout_s:.0f} s")
            answer = receive.recv()
            if isinstance(answer, str):
                raise RuntimeError(f"{label}: {answer}")
            out.append(answer)
    except EOFError:
        raise RuntimeError(f"{label}: the worker died (exit code {worker.exitcode})") from None
    finally:
        worker.join(timeout=30)
        if worker.is_alive():
            worker.kill()
    return out


def _serve(conn, spec: dict[str, Any], cases: list[Case], label: str, driver_pid: int) -> None:
    """The worker: the fitness's TrialRunner, then each case's estimate and measured peak, sent as they end."""
    from fitness.qlora.worker.lifeline import die_with_parent

    die_with_parent(driver_pid)  # a benchmark killed mid-case leaves no worker on its GPU
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from fitness.qlora.base.model import compute_dtype
        from fitness.qlora.genes import parse_genes
        from fitness.qlora.memory.process import release_freed_memory, rss_mb
        from fitness.qlora.spec import QLoRASpec
        from fitness.qlora.worker.runner import TrialRunner

        settings = QLoRASpec.from_dict(spec)
        runner = TrialRunner(settings.worker_settings)
        if runner.memory is None:
            raise RuntimeError(f"no model shape for {settings.model}")
        planner = runner.memory.planner  # the fitness's own estimate, uncorrected: planner.estimated
        _run(runner, [{**FLOAT32, **WARM_UP}], 0)  # loads the float32 base and pays the first trial's costs
        for case in cases:
            genes = [{**FLOAT32, **g} for g in case.trials]
            shapes = []
            for g in genes:
                cfg = parse_genes(g, lr_scaling=settings.lr_scaling, lr_reference_batch=settings.lr_reference_batch)[0]
                shapes.append(
                    planner.shape(cfg, compute_dtype(cfg.quant.bnb_4bit_compute_dtype, runner.device).itemsize)
                )
            footprint = planner.estimated(shapes)
            release_freed_memory()
            before = rss_mb()
            peak = _run(runner, genes, len(genes))
            conn.send(Measurement(label, case.name, footprint.trials, peak - before, footprint.parts, footprint.base))
    except Exception as exc:  # the parent reports it
        conn.send(f"{type(exc).__name__}: {exc}".splitlines()[0][:500])


def _run(runner, genes: list[dict[str, Any]], first_id: int) -> float:
    """Train ``genes`` as one cohort; the worker's peak RSS (MB) while it ran. A failed trial raises."""
    trials = [Trial(first_id + i, g, Budget(steps=STEPS), seed=i) for i, g in enumerate(genes)]
    results: dict[int, Any] = {}
    runner.run_cohort(trials, lambda index, result: results.__setitem__(index, result))
    failed = [r for r in results.values() if r.status.value != "complete"]
    if failed:
        raise RuntimeError(f"a trial failed: {failed[0].reason}: {failed[0].message}")
    if len(trials) > 1 and max(r.metrics.get("cohort_size", 0) for r in results.values()) != len(trials):
        raise RuntimeError(f"the {len(trials)} trials did not train as one cohort")
    return max(r.metrics["peak_rss_mb"] for r in results.values())


def tiny_model(folder: Path | None = None) -> Path:
    """The tiny random Llama, built in ``folder`` (a fresh temporary directory when None)."""
    from evobench.tiny import build_tiny_llama

    return build_tiny_llama(folder or Path(tempfile.mkdtemp(prefix="tiny-llama-")))


def table(measurements: Sequence[Measurement]) -> str:
    """A Markdown table: model, case, estimated MB, measured MB, error %, the estimate's largest parts."""
    lines = [
        "| model | shape | estimated MB | measured MB | error % | largest parts (MB) |",
        "|---|---|---:|---:|---:|---|",
    ]
    for m in measurements:
        parts = ", ".join(f"{k} {v:.0f}" for k, v in sorted(m.parts.items(), key=lambda kv: -kv[1])[:3])
        lines.append(
            f"| {m.model} | {m.case} | {m.estimated_mb:.0f} | {m.measured_mb:.0f} | {m.error_pct:+.0f} | {parts} |"
        )
    return "\n".join(lines)


def off_goal(measurements: Sequence[Measurement], goal_pct: float = GOAL_PCT) -> list[Measurement]:
    """The measurements whose estimate is off by more than ``goal_pct``."""
    return [m for m in measurements if abs(m.error_pct) > goal_pct]
