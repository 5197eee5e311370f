"""One generation of K QLoRA trials: one cohort on a shared 4-bit base against one after another.

For K = 1, 2, 4, 8, 16 trials of different LoRA genes (rank, alpha, dropout, rsLoRA,
target modules, learning rate, optimizer) at SmolLM2-135M's shape (4 x 128 tokens a
step), it measures the makespan of the generation (training and scoring every trial)
and the training tokens/s, as one cohort (``fitness.cohort: K``) against sequential
(``cohort: 1``), with each trial's validation perplexity both ways.
Everything runs in this process on one resident base, as in the fitness's worker; the
K trials are the first K of the same 16, run one after another and then as a cohort, back to back.

    python experiments/benchmark_cohorts.py                            # CPU, 2 steps a trial
    python experiments/benchmark_cohorts.py --device cuda --steps 20   # the GPU benchmark

``--dtype float32`` measures the cohort difference without bf16 rounding.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

from evo.trial import Budget, Trial
from fitness.qlora.memory.sizing import CohortPlan, CohortSizer
from fitness.qlora.spec import QLoRASpec
from fitness.qlora.worker.runner import TrialRunner

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def generation(k: int, steps: int, dtype: str) -> list[Trial]:
    """K trials of one generation: the LoRA and optimizer genes vary, the block shape does not."""
    rng = random.Random(0)
    out = []
    for i in range(k):
        config = {
            "learning_rate": 10 ** rng.uniform(-4, -2),
            "r": rng.choice([8, 16, 32, 64]),
            "lora_alpha": rng.choice([16, 32, 64, 128]),
            "lora_dropout": rng.choice([0.0, 0.05, 0.1]),
            "use_rslora": rng.random() < 0.5,
            "target_modules": rng.choice(["attention", "all-linear", ["q_proj", "v_proj"]]),
            "optim": rng.choice(["adamw_torch", "adamw_torch", "adafactor"]),
            "per_device_train_batch_size": 4,
            "max_seq_length": 128,
            "bnb_4bit_compute_dtype": dtype,
        }
        out.append(Trial(i, config, Budget(steps=steps), seed=1000 + i))
    return out


def run_cohort(runner: TrialRunner, trials: list[Trial]) -> tuple[list, float]:
    runner.sizer = CohortSizer(CohortPlan(len(trials), len(trials)), device=runner.device)
    answers: dict = {}
    start = time.perf_counter()
    runner.run_cohort(trials, lambda index, result: answers.setdefault(index, result))
    return [answers[i] for i in range(len(trials))], time.perf_counter() - start


def run_alone(runner: TrialRunner, trial: Trial) -> tuple:
    runner.sizer = CohortSizer(CohortPlan(1, 1), device=runner.device)
    start = time.perf_counter()
    result = runner.run(trial)
    return result, time.perf_counter() - start


def train_tokens_per_s(results: list, together: bool) -> float:
    """Training tokens over training time; a cohort's members share their training time."""
    tokens = sum(r.metrics["train_tokens"] for r in results)
    seconds = [r.metrics["train_seconds"] for r in results]
    return tokens / (max(seconds) if together else sum(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"])
    parser.add_argument("--ks", default="1,2,4,8,16", help="cohort sizes, comma-separated")
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per trial")
    parser.add_argument("--validation-tokens", type=int, default=512)
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    spec = QLoRASpec.from_dict(
        {
            "model": args.model,
            "device": args.device,
            "validation_tokens": args.validation_tokens,
            "eval_seq_length": 256,
            "eval_batch_size": 2,
        }
    )
    t0 = time.perf_counter()
    runner = TrialRunner(spec.worker_settings)
    print(f"worker setup {time.perf_counter() - t0:.1f} s on {runner.device}; {args.steps} steps of 4 x 128 a trial")
    trials = generation(max(ks), args.steps, args.dtype)
    run_alone(runner, trials[0])  # warm-up: kernels, allocator, the data blocks
    rows, per_trial, alone = [], {}, []
    for k in ks:  # each K's two ways back to back, so both see the same load on a shared machine
        alone = [run_alone(runner, trial) for trial in trials[:k]]
        results, makespan = run_cohort(runner, trials[:k])
        assert all(r.ok for r in results), [r.message for r in results if not r.ok]
        sequential = sum(wall for _, wall in alone)
        print(f"K={k}: sequential {sequential:.1f} s, cohort {makespan:.1f} s", flush=True)
        diffs = [abs(r.values["val_perplexity"] / a.values["val_perplexity"] - 1) for r, (a, _) in zip(results, alone)]
        rows.append(
            (
                k,
                sequential,
                makespan,
                sequential / makespan,
                train_tokens_per_s([a for a, _ in alone], together=False),
                train_tokens_per_s(results, together=True),
                max(diffs),
            )
        )
        per_trial[k] = results
    print()
    print(
        "| K | sequential makespan | cohort makespan | speed-up | train tok/s sequential | train tok/s cohort "
        "| max rel. ppl difference |"
    )
    print("|---|---|---|---|---|---|---|")
    for k, seq, together, speedup, tps_seq, tps_cohort, diff in rows:
        print(
            f"| {k} | {seq:.1f} s | {together:.1f} s | {speedup:.2f}x | {tps_seq:.0f} | {tps_cohort:.0f} | {diff:.1e} |"
        )
    big = max(ks)
    print()
    print(f"| trial | genes | val ppl alone | val ppl in the cohort (K={big}) |")
    print("|---|---|---|---|")
    for (a, _), p, trial in zip(alone, per_trial[big], trials):
        c = trial.config
        genes = f"r {c['r']}, alpha {c['lora_alpha']}, {c['target_modules']}, {c['optim']}, lr {c['learning_rate']:.1e}"
        print(f"| {trial.trial_id} | {genes} | {a.values['val_perplexity']:.4f} | {p.values['val_perplexity']:.4f} |")
    print(f"\nmedian trial alone: {statistics.median(w for _, w in alone):.1f} s")


if __name__ == "__main__":
    main()
