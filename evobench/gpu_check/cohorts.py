"""Step 3: K trials as one cohort against one after another, with our loop and with Trainer.

K = 1, 2, 4, ... trials drawn (seed 0) from experiments/smollm2_pydoc.yaml's search space,
with its fixed values, budget and validation set, at SmolLM2-135M's shape with random
weights (``--quick``: the tiny Llama). ``max_seq_length`` is pinned to 128, the baseline's:
trials of other block shapes would form cohorts of their own. Everything runs in this
process, on one resident base, as in the fitness's worker (``TrialRunner``):

1. each trial alone (our loop; the first is run once more beforehand, as a warm-up);
2. the first K trials as one cohort, for each K;
3. each trial alone with ``transformers.Trainer`` and peft (``trainer_baseline.py``): the first 16,
   then all of them under ``cohort: auto`` to see the size it chooses, then the other trials.

Each measurement is recorded as it ends, so a step killed at its limit keeps what it measured.
"""

from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import evo
from evo.trial import Trial
from evobench.gpu_check import cohort_tables
from evobench.gpu_check.models import smollm2_shaped, tiny_llama
from evobench.gpu_check.record import Options, Record, StepStatus, step_main
from evobench.paths import run_config

CONFIG = "smollm2_pydoc"
SEQ_LENGTH = 128
QUICK_VALIDATION = {"validation_tokens": 512, "eval_seq_length": 64}  # the tiny model on a CPU


def draw_trials(n: int) -> list[Trial]:
    """``n`` trials of the run config's space and fixed values, seeds 1000 + i, its budget."""
    config = evo.parse_config(run_config(CONFIG))
    rng = np.random.default_rng(0)
    trials = []
    for i in range(n):
        genes = {**config.fixed, **config.space.sample(rng), "max_seq_length": SEQ_LENGTH}
        trials.append(Trial(i, genes, config.budget, seed=1000 + i))
    return trials


def build_model(options: Options, scratch: Path) -> Path:
    tiny = tiny_llama(scratch / "tiny")
    return tiny if options.quick else smollm2_shaped(scratch / "smollm2-135m-random", tokenizer_from=tiny)


def spec_for(options: Options, model: Path, scratch: Path, cohort: int | str):
    from fitness.qlora.spec import QLoRASpec

    fitness = {k: v for k, v in run_config(CONFIG)["fitness"].items() if k != "device"}
    fitness.update(model=str(model), device=options.device, cache_dir=str(scratch / "cache"), cohort=cohort)
    if options.quick:
        fitness.update(QUICK_VALIDATION)
    return QLoRASpec.from_dict(fitness).worker_settings


def note(record: Record, summary: str, **details: Any) -> None:
    """Record what was measured, with the tables as they stand: a step killed next keeps both."""
    record.details.update(details)
    record.markdown = cohort_tables.markdown(record.details)
    record.update(summary)


def summary_of(result) -> dict[str, Any]:
    m = result.metrics
    return {
        "status": result.status.value,
        "message": result.message,
        "val_perplexity": result.values.get("val_perplexity"),
        "train_tokens": m.get("train_tokens", 0),
        "train_seconds": m.get("train_seconds", 0.0),
        "peak_memory_mb": m.get("peak_memory_mb"),
        "cohort_size": m.get("cohort_size"),
        "steps": m.get("steps"),
        "budget_steps": m.get("budget_steps"),
        "compute_dtype": m.get("compute_dtype"),
    }


def in_cohort(runner, trials: list[Trial]) -> tuple[list, float]:
    answers: dict[int, Any] = {}
    start = time.perf_counter()
    runner.run_cohort(trials, lambda index, result: answers.setdefault(index, result))
    return [answers[i] for i in range(len(trials))], time.perf_counter() - start


def measure_ours(runner, trials: list[Trial], ks: tuple[int, ...], record: Record) -> list:
    """Each trial alone, then the first K as one cohort; returns the results alone (for Trainer's configs)."""
    runner.run(trials[0])  # warm-up: kernels, the allocator, the packed blocks
    alone, results = [], []
    for trial in trials:
        start = time.perf_counter()
        result = runner.run(trial)
        results.append(result)
        alone.append({**summary_of(result), "wall_seconds": time.perf_counter() - start, "config": trial.config})
        note(record, f"{len(alone)} of {len(trials)} trials alone", alone=alone)
    cohorts: dict[str, Any] = {}
    for k in ks:
        together, wall = in_cohort(runner, trials[:k])
        cohorts[str(k)] = {"wall_seconds": wall, "trials": [summary_of(r) for r in together]}
        note(record, f"cohort of {k}: {wall:.1f} s", cohorts=cohorts)
    return results


def measure_auto(options: Options, model: Path, scratch: Path, trials: list[Trial], record: Record) -> None:
    from fitness.qlora.worker.runner import TrialRunner

    runner = TrialRunner(spec_for(options, model, scratch, "auto"))
    runner.run(trials[0])  # the same warm-up as the fixed sizes had
    together, wall = in_cohort(runner, trials)
    chosen = max(r.metrics.get("cohort_size", 1) for r in together)
    auto = {
        "chosen": chosen,
        "wall_seconds": wall,
        "trials": len(trials),
        "statuses": [r.status.value for r in together],
    }
    note(record, f"auto chose {chosen}", auto=auto)
    del runner


def measure_trainer(options: Options, model: Path, data, evaluation, results: list, trials, record: Record, *,
                    first: int, stop: int) -> None:  # fmt: skip
    """Trials ``first`` to ``stop`` with Trainer, appended to what earlier calls recorded."""
    from evobench.gpu_check.trainer_baseline import load_base, train_one
    from fitness.qlora.export import split_sections

    ran = [(t, r) for t, r in zip(trials, results) if r.applied_config is not None]
    if first >= min(stop, len(ran)):
        return
    base = load_base(str(model), split_sections(ran[0][1].applied_config)["quantization"], options.device)
    validation = data.validation_blocks(evaluation.seq_length, evaluation.max_tokens)
    done: list[dict[str, Any]] = record.details.setdefault("trainer", [])
    for trial, result in ran[first:stop]:
        steps = result.metrics.get("budget_steps") or 1
        one = train_one(
            base, data, result.applied_config, seed=trial.seed, steps=steps, validation=validation,
            eval_batch_size=evaluation.batch_size, device=options.device,
        )  # fmt: skip
        done.append(one)
        note(record, f"{len(done)} of {len(ran)} trials with Trainer", trainer=done)


def run(options: Options, record: Record) -> tuple[StepStatus, str]:
    import torch

    from fitness.qlora.worker.runner import TrialRunner

    ks = tuple(sorted(set(options.ks)))
    trials = draw_trials(max(ks))
    with tempfile.TemporaryDirectory(prefix="gpu-check-cohorts-") as scratch_dir:
        scratch = Path(scratch_dir)
        start = time.perf_counter()
        model = build_model(options, scratch)
        # cohort fixed at max(ks): run_cohort(first K) is one cohort, run(trial) a trial alone
        runner = TrialRunner(spec_for(options, model, scratch, max(ks)))
        record.update("model and worker ready", model="tiny Llama" if options.quick else "SmolLM2-135M shape, random",
                      setup_seconds=time.perf_counter() - start, ks=list(ks))  # fmt: skip
        results = measure_ours(runner, trials, ks, record)
        data, evaluation = runner.data, runner.evaluation
        del runner

        def release() -> None:  # the next phase loads a base of its own and measures its own peak
            gc.collect()
            if options.device == "cuda":
                torch.cuda.empty_cache()

        release()

        # what the goal is judged by first (Trainer up to K = 16), in case the step's time runs out
        measure_trainer(options, model, data, evaluation, results, trials, record, first=0, stop=cohort_tables.GOAL_K)
        release()
        measure_auto(options, model, scratch, trials, record)
        release()
        measure_trainer(options, model, data, evaluation, results, trials, record, first=cohort_tables.GOAL_K,
                        stop=len(trials))  # fmt: skip
    return cohort_tables.verdict(record.details)


if __name__ == "__main__":
    step_main(run)
