"""experiments/qlora_surrogate.py on a small fake collection: the fit report, evobench's surrogate fitness contract
(deterministic, tokens by fidelity, checkpoints pay only the increment, early stopping), and
benchmark_fidelity.py's smollm2-surrogate task end to end."""

import importlib.util
import json
import math
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evo.trial import Budget, EarlyStop, Trial, TrialStatus
from evobench.tasks.qlora_data import load_data
from evobench.tasks.surrogate_fitness import CHECKPOINT_FILE, SurrogateFitness

ROOT = Path(__file__).resolve().parents[2]

SPACE = {
    "learning_rate": {"type": "log_float", "low": 1e-4, "high": 1e-2},
    "r": {"type": "int", "choices": [8, 16, 32]},
    "lr_scheduler_type": {"type": "categorical", "choices": ["constant", "linear", "cosine"]},
    "per_device_train_batch_size": {"type": "int", "choices": [4, 8]},
    "max_seq_length": {"type": "int", "choices": [128, 256]},
}
FIXED = {"optim": "adamw_torch", "gradient_accumulation_steps": 1}
EIGHT_STEPS = {**FIXED, "learning_rate": 3e-3, "r": 16, "lr_scheduler_type": "linear"} | {
    "per_device_train_batch_size": 4,
    "max_seq_length": 128,
}  # 4,096 tokens / (4 x 128) = 8 steps: validations at 2, 4, 6, 8
BUDGET = Budget(tokens=4096)


def final_log_ppl(genome, fraction):
    """A smooth landscape: best near lr 2e-3, better with more of the budget; too high diverges."""
    x = math.log10(genome["learning_rate"])
    if x > -2.1:
        return math.log(4e7)
    return 2.8 + 0.3 * (x + 2.7) ** 2 + 0.3 * (1 - fraction) + 0.01 * math.log2(genome["r"] / 8)


def write_collection(path, n=40):
    rng = np.random.default_rng(0)
    header = {"kind": "header", "collection": "fake", "eval_every": 2, "budget": {"steps": None, "tokens": 4096}}
    lines = [json.dumps({**header, "search_space": SPACE, "fixed": FIXED})]
    for i in range(n):
        genome = {
            "learning_rate": float(10 ** rng.uniform(-4, -2)),
            "r": int(rng.choice([8, 16, 32])),
            "lr_scheduler_type": str(rng.choice(["constant", "linear", "cosine"])),
            "per_device_train_batch_size": int(rng.choice([4, 8])),
            "max_seq_length": int(rng.choice([128, 256])),
        }
        steps = 4096 // (genome["per_device_train_batch_size"] * genome["max_seq_length"])
        curve = [[s, math.exp(final_log_ppl(genome, s / steps) + rng.normal(0, 0.01))] for s in range(2, steps + 1, 2)]
        trial = {"kind": "trial", "collection": "fake", "index": i, "genome": genome, "config": {**FIXED, **genome}}
        lines.append(
            json.dumps(
                {**trial, "status": "complete", "val_perplexity": curve[-1][1]} | {"val_perplexity_curve": curve}
            )
        )
    path.write_text("\n".join(lines) + '\n{"kind": "trial", "collection": "fa')  # the collector is mid-write
    return path


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return write_collection(tmp_path_factory.mktemp("collection") / "trials.jsonl")


@pytest.fixture(scope="module")
def fitness(data_file):
    return SurrogateFitness.from_file(data_file)


def test_loading_skips_the_torn_last_line(data_file):
    data = load_data(data_file)
    assert len(data.trials) == 40 and data.skipped == 1 and data.budget == BUDGET


def test_quick_fit_report_prints_the_selection_and_the_held_out_spearman(data_file, capsys, monkeypatch):
    script = str(ROOT / "experiments/qlora_surrogate.py")
    monkeypatch.setattr(sys, "argv", [script, "--data-file", str(data_file), "--quick"])
    runpy.run_path(script, run_name="__main__")
    out = capsys.readouterr().out
    assert "gp-matern32" in out and "random-forest" in out and "k-nn" in out and "one-hot" in out
    held_out = out.split("held out:")[1]
    final = next(line for line in held_out.splitlines() if line.strip().startswith("1.00"))
    assert -1 <= float(final.split()[2]) <= 1  # the Spearman of the final perplexity


def test_answers_are_deterministic_and_ignore_keys_outside_the_space(fitness):
    a = fitness.evaluate(Trial(0, EIGHT_STEPS, BUDGET, seed=1))
    b = fitness.evaluate(Trial(1, {**EIGHT_STEPS, "weight_decay": 0.1, "optim": "adafactor"}, BUDGET, seed=2))
    assert a.ok and a.values == b.values and 10 < a.values["val_perplexity"] < 40
    assert [s for s, _ in a.metrics["val_perplexity_curve"]] == [2, 4, 6, 8] and a.metrics["budget_steps"] == 8


def test_noise_is_seeded_by_the_trial(data_file):
    noisy = SurrogateFitness(SurrogateFitness.from_file(data_file).surrogate, eval_every=2, identity="x", noise=0.05)
    value = lambda seed: noisy.evaluate(Trial(0, EIGHT_STEPS, BUDGET, seed=seed)).values["val_perplexity"]  # noqa: E731
    assert value(1) == value(1) != value(2)


def test_tokens_follow_the_fidelity(fitness):
    tokens = [
        fitness.evaluate(Trial(0, EIGHT_STEPS, BUDGET, 1, fidelity=f)).metrics["train_tokens"] for f in (0.25, 0.5, 1)
    ]
    assert tokens == [1024, 2048, 4096]


def test_a_continued_trial_pays_only_the_increment_and_ends_where_one_run_does(fitness, tmp_path):
    whole = fitness.evaluate(Trial(0, EIGHT_STEPS, BUDGET, seed=1))
    previous, spent = None, 0
    for rung, fidelity in enumerate((0.25, 0.5, 1.0)):
        here = tmp_path / str(rung)
        result = fitness.evaluate(
            Trial(0, EIGHT_STEPS, BUDGET, 1, fidelity=fidelity, resume_from=previous, checkpoint_dir=here)
        )
        spent += result.metrics["train_tokens"]
        previous = here
    assert spent == 4096 and result.metrics["start_step"] == 4
    assert result.values == whole.values
    assert result.metrics["val_perplexity_curve"] == whole.metrics["val_perplexity_curve"]


def test_a_continued_trial_may_change_genes_but_not_structural_ones(fitness, tmp_path):
    fitness.evaluate(Trial(0, EIGHT_STEPS, BUDGET, 1, fidelity=0.5, checkpoint_dir=tmp_path))
    halfway = json.loads((tmp_path / CHECKPOINT_FILE).read_text())["val_perplexity_curve"][-1][1]
    changed = fitness.evaluate(Trial(0, {**EIGHT_STEPS, "learning_rate": 1e-4}, BUDGET, 1, resume_from=tmp_path))
    assert changed.ok and changed.metrics["val_perplexity_curve"][1][1] == halfway  # its past stays
    with pytest.raises(RuntimeError, match="r is 32"):
        fitness.evaluate(Trial(0, {**EIGHT_STEPS, "r": 32}, BUDGET, 1, resume_from=tmp_path))


def test_early_stopping_prunes_a_trial_worse_than_the_median(fitness):
    strict = EarlyStop(thresholds=((0.25, 1.0),))
    pruned = fitness.evaluate(Trial(0, EIGHT_STEPS, BUDGET, 1, early_stop=strict))
    assert pruned.status is TrialStatus.PRUNED and pruned.metrics["pruned_at_step"] == 2
    assert pruned.metrics["train_tokens"] == 1024 and "worse than the early-stopping threshold" in pruned.message
    lenient = fitness.evaluate(Trial(0, EIGHT_STEPS, BUDGET, 1, early_stop=EarlyStop(thresholds=((0.25, 1e9),))))
    assert lenient.ok and lenient.metrics["train_tokens"] == 4096


@pytest.mark.skipif(importlib.util.find_spec("optuna") is None, reason="the bench extra (optuna) is not installed")
def test_benchmark_runs_every_method_on_the_surrogate(data_file):
    done = subprocess.run(
        [sys.executable, "experiments/benchmark_fidelity.py", "--task", "smollm2-surrogate"]
        + ["--data-file", str(data_file), "--seeds", "1", "--budget", "6"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for method in ("ga", "ga-plain", "ga-gen", "ga-mf", "ga-es", "pbt", "random", "optuna-tpe", "optuna-tpe-hb"):
        assert f"  {method} " in done.stdout
    assert "task smollm2-surrogate" in done.stdout


@pytest.mark.parametrize("script", ["qlora_surrogate.py", "benchmark_fidelity.py"])
def test_a_missing_data_file_is_one_line_and_exit_2(tmp_path, script):
    argv = [sys.executable, f"experiments/{script}", "--data-file", str(tmp_path / "none.jsonl")]
    if script == "benchmark_fidelity.py":
        argv += ["--task", "smollm2-surrogate"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"{tmp_path / 'none.jsonl'}: no trial data (collect it with experiments/collect_qlora_trials.py)"
    ]
