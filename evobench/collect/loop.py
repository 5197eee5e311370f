"""Evaluate the planned trials in order and append each as it ends; SIGTERM or SIGINT end the
collection cleanly (a line being written is finished first, the trial in flight is dropped).

A trial line holds ``seed``, ``genome`` (the sampled genes), ``config`` (as the fitness
applied it, fixed values included), ``status`` (complete | failed), ``reason`` (null |
exception | diverged | oom | timeout | killed), ``message``, ``val_perplexity`` (final; null
when failed), ``train_loss_curve`` and ``val_perplexity_curve`` ([[step, value], ...]),
``train_tokens``, ``wall_seconds``, ``train_tokens_per_s``, ``peak_memory_mb``,
``fingerprint``, ``budget``, ``machine`` and ``metrics`` (everything else the fitness reported).
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evo.trial import Trial, TrialResult
from evobench.collect.data_file import append
from evobench.collect.plan import CollectionPlan

TOP_LEVEL_METRICS = (
    "train_loss_curve",
    "val_perplexity_curve",
    "train_tokens",
    "wall_seconds",
    "train_tokens_per_s",
    "peak_memory_mb",
)


class Stop(Exception):
    """SIGTERM or SIGINT arrived: end the collection, dropping the trial in flight."""


def record_for(
    index: int, genome: dict[str, Any], trial: Trial, result: TrialResult, *, header, machine, elapsed: float
) -> dict[str, Any]:
    metrics = dict(result.metrics)
    top = {name: metrics.pop(name, None) for name in TOP_LEVEL_METRICS}
    if top["wall_seconds"] is None:  # timeout, killed worker: the fitness could not measure it
        top["wall_seconds"] = elapsed
    return {
        "kind": "trial",
        "collection": header["collection"],
        "index": index,
        "seed": trial.seed,
        "genome": genome,
        "config": dict(result.applied_config or trial.config),
        "status": result.status.value,
        "reason": result.reason.value if result.reason else None,
        "message": result.message,
        "val_perplexity": result.values.get("val_perplexity"),
        **top,
        "fingerprint": header["fitness_fingerprint"],
        "budget": trial.budget.as_dict(),
        "machine": machine,
        "elapsed_seconds": elapsed,
        "metrics": metrics,
    }


def machine_info(fitness: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    info.update(fitness.describe())  # device, torch, transformers, peft, bitsandbytes versions
    return info


def cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[dict[str, Any]]:
    """SIGTERM/SIGINT raise Stop, except while a line is written (then the loop stops after it)."""
    state: dict[str, Any] = {"signal": None, "writing": False}

    def handler(signum, frame):
        state["signal"] = signal.Signals(signum).name
        if not state["writing"]:
            raise Stop(state["signal"])

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield state
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def collect(plan: CollectionPlan, fitness: Any, path: Path, todo: list[int], header: dict[str, Any]) -> int:
    """Evaluate and append ``todo`` in order; returns how many were written."""
    machine = machine_info(fitness)
    durations: list[float] = []
    with stop_on_signals() as state:
        try:
            for k, index in enumerate(todo):
                genome = plan.genome(index)
                trial = plan.trial(index, genome)
                tick = time.perf_counter()
                result = fitness.evaluate(trial)
                elapsed = time.perf_counter() - tick
                if state["signal"]:  # the worker may have died of the same Ctrl-C: not data
                    raise Stop(state["signal"])
                record = record_for(index, genome, trial, result, header=header, machine=machine, elapsed=elapsed)
                state["writing"] = True
                append(path, record)
                state["writing"] = False
                durations.append(elapsed)
                print(progress_line(record, k + 1, len(todo), durations), flush=True)
                if state["signal"]:
                    raise Stop(state["signal"])
        except Stop as stop:
            kill_worker(fitness)
            print(f"stopped by {stop}: {len(durations)} trials written this session", flush=True)
    return len(durations)


def kill_worker(fitness: Any) -> None:
    """A worker busy with a trial would read close()'s stop message only after it."""
    pid = getattr(fitness, "worker_pid", None)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def progress_line(record: dict[str, Any], done: int, total: int, durations: list[float]) -> str:
    ppl = record["val_perplexity"]
    outcome = f"val_ppl {ppl:8.3f}" if ppl is not None else f"{record['status']} ({record['reason']})"
    eta = sum(durations) / len(durations) * (total - done)
    return (
        f"trial {record['index']:4d}  {outcome:<20}  {durations[-1]:6.1f} s  "
        f"[{done}/{total}]  ETA {eta / 3600:.0f}h{eta % 3600 / 60:02.0f}m"
    )
