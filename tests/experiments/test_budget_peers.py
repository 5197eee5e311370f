"""The budget benchmark's peers and runs: a resumed trial pays only its increment, the peers'
spaces decode to ours, Syne Tune's driver answers over its pipe, missing peers and tasks are
refused in one line, and the cache keeps a stopped benchmark's runs."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evo import SearchSpace
from evobench.budget_runs import BenchmarkJob, path_of, run_jobs
from evobench.ledger import Ledger
from evobench.methods.chunks import Chunks
from evobench.methods.mf_peers import decode
from evobench.methods.schedulers import ST13_PYTHON, syne_tune_space
from evobench.tasks.fidelity import TASKS
from fitness import make_fitness

ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC = TASKS["synthetic"]
needs_syne_tune = pytest.mark.skipif(importlib.util.find_spec("syne_tune") is None, reason="syne-tune is not installed")


def _ledger(limit_trials: int = 4) -> Ledger:
    return Ledger(make_fitness(SYNTHETIC.fitness), limit_trials * SYNTHETIC.budget.tokens, seed=0)


def test_a_trial_continued_chunk_by_chunk_pays_what_one_trial_to_its_end_pays(tmp_path):
    config = {**SYNTHETIC.fixed, "learning_rate": 1e-3, "per_device_train_batch_size": 8, "r": 16, "lora_alpha": 32}
    chunked, whole = _ledger(), _ledger()
    run = Chunks(SYNTHETIC, chunked, config, 0, seed=3, scratch=tmp_path)
    values = [run.advance(f) for f in (0.25, 0.5, 1.0)]
    Chunks(SYNTHETIC, whole, config, 0, seed=3, scratch=tmp_path / "whole").advance(1.0)
    assert chunked.spent == whole.spent == SYNTHETIC.budget.tokens  # not 1/4 + 1/2 + 1 of it
    assert values[-1] == whole.points[-1][1]  # and ends where one run to the end does
    assert [p[1] for p in chunked.points] == [None, None, values[-1]]  # only the whole-budget value is a result
    assert not any(tmp_path.iterdir())  # the last checkpoint is removed when the next chunk is trained


def test_every_syne_tune_sample_decodes_to_a_genome_of_our_space():
    import random

    space = SearchSpace.from_spec(SYNTHETIC.space)
    spec = syne_tune_space(space)
    rng = random.Random(0)
    for _ in range(50):  # a draw from each domain as Syne Tune's would land: an index or a value in range
        values = {}
        for name, domain, args in spec:
            if domain in ("choice", "ordinal"):
                values[name] = rng.choice(args[0])
            elif domain.endswith("randint"):
                values[name] = rng.randint(*args)
            else:
                values[name] = rng.uniform(*args)
        assert space.contains(decode(values, space)), values


@needs_syne_tune
def test_syne_tune_driver_answers_over_its_pipe():
    space = syne_tune_space(SearchSpace.from_spec(SYNTHETIC.space))
    requests = [
        {"init": {"method": "asha", "space": space, "max_t": 8, "seed": 0}},
        {"suggest": True},
        {"result": [0, 1, 12.0, False]},
        {"suggest": True},
        {"result": [1, 1, 13.0, False]},
    ]
    done = subprocess.run(
        [sys.executable, str(ROOT / "evobench" / "methods" / "syne_tune_driver.py")],
        input="".join(json.dumps(r) + "\n" for r in requests),
        capture_output=True,
        text=True,
        timeout=120,
    )
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and len(answers) == len(requests), done.stderr
    assert answers[1]["trial"] == 0 and answers[3]["trial"] == 1 and not answers[1]["resumed"]
    assert set(answers[1]["config"]) == {name for name, _, _ in space}
    assert answers[2]["decision"] == "CONTINUE"  # the first at its rung goes on
    # the second is worse than the first at the same rung: with one bracket ASHA stops it
    assert answers[4]["decision"] == "STOP"


@needs_syne_tune
def test_asha_spends_the_budget_epoch_by_epoch_and_finds_whole_budget_results():
    from evobench.methods.fidelity import RUNNERS

    ledger = _ledger(limit_trials=6)
    RUNNERS["st-asha"](SYNTHETIC, ledger, 0, 6)
    assert ledger.limit <= ledger.spent < ledger.limit + SYNTHETIC.budget.tokens
    assert any(v is not None for _, v, _ in ledger.points)
    assert len(ledger.points) > 6 * 2  # trials were stopped at rungs, so more of them started than six


def _refusal(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "experiments/benchmark_budget.py", *args, "--seeds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_syne_tune_13_without_its_environment_is_refused_with_how_to_make_it(tmp_path):
    done = _refusal("--methods", "ga", "st-dyhpo", env={"EVOBENCH_SYNE_TUNE_13": str(tmp_path / "none" / "python")})
    assert done.returncode == 2 and done.stdout == ""
    assert "st-dyhpo" in done.stderr and "syne-tune==0.13.0" in done.stderr and len(done.stderr.splitlines()) == 1


def test_a_yahpo_task_without_its_data_is_refused_with_how_to_get_it(tmp_path):
    done = _refusal("--tasks", "nb301", "--methods", "ga", env={"EVOBENCH_YAHPO_DATA": str(tmp_path)})
    assert done.returncode == 2 and done.stdout == ""
    assert "nb301" in done.stderr and "slds-lmu/yahpo_data" in done.stderr and len(done.stderr.splitlines()) == 1


def test_the_cache_keeps_each_run_and_a_rerun_reads_it_back(tmp_path):
    jobs = [BenchmarkJob("synthetic", method, seed, budget=3) for method in ("ga", "random") for seed in (0, 1)]
    first = run_jobs(jobs, tmp_path, log=lambda _: None)
    assert all(path_of(tmp_path, j).exists() for j in jobs) and not any(o.cached for o in first)
    path_of(tmp_path, jobs[0]).unlink()  # as if the benchmark had been stopped before that run
    again = run_jobs(jobs, tmp_path, log=lambda _: None)
    assert [o.cached for o in again] == [False, True, True, True]
    # the rerun measures the same tokens and values (not the same seconds)
    assert [[p[:2] for p in o.points] for o in again] == [[p[:2] for p in o.points] for o in first]
    assert not list(tmp_path.rglob("*.partial"))
    assert len({path_of(tmp_path, j) for j in jobs}) == len(jobs)


def test_runs_in_parallel_processes_measure_what_one_process_does(tmp_path):
    jobs = [BenchmarkJob("synthetic", "ga", seed, budget=3) for seed in (0, 1, 2)]
    serial = run_jobs(jobs, None, log=lambda _: None)
    parallel = run_jobs(jobs, tmp_path, workers=2, nice=1, log=lambda _: None)
    assert [o.job for o in parallel] == jobs
    assert [[p[:2] for p in o.points] for o in parallel] == [[p[:2] for p in o.points] for o in serial]


@pytest.mark.skipif(
    not Path(ST13_PYTHON).exists(), reason="Syne Tune 0.13's environment (EVOBENCH_SYNE_TUNE_13) is not here"
)
def test_syne_tune_13_runs_through_its_bridge():
    from evobench.methods.fidelity import RUNNERS

    ledger = _ledger(limit_trials=2)
    RUNNERS["st-dyhpo"](SYNTHETIC, ledger, 0, 2)  # pause and resume: a resumed trial continues its checkpoint
    assert ledger.limit <= ledger.spent < ledger.limit + SYNTHETIC.budget.tokens


def _yahpo_missing() -> str | None:
    from evobench.tasks import yahpo

    return yahpo.missing("nb301-CIFAR10")


@pytest.mark.skipif(_yahpo_missing() is not None, reason="YAHPO Gym or its nb301 data is not here")
def test_a_yahpo_trial_pays_its_epochs_resumes_and_stops_at_a_threshold(tmp_path):
    from evo.trial import Budget, EarlyStop, Trial, TrialStatus
    from evobench.tasks.yahpo import task_and_fitness

    task, build = task_and_fitness("nb301-CIFAR10")
    fitness = build()
    config = {**task.fixed, **SearchSpace.from_spec(task.space).sample(np.random.default_rng(0))}
    budget = Budget(tokens=fitness.epochs)
    half = fitness.evaluate(Trial(0, config, budget, 0, fidelity=0.5, checkpoint_dir=tmp_path / "half"))
    rest = fitness.evaluate(Trial(0, config, budget, 0, fidelity=1.0, resume_from=tmp_path / "half"))
    whole = fitness.evaluate(Trial(0, config, budget, 0))
    assert (
        half.metrics["train_tokens"] + rest.metrics["train_tokens"] == whole.metrics["train_tokens"] == fitness.epochs
    )
    assert rest.values == whole.values and 0 < whole.values["val_error"] < 1
    curve = fitness.curve(config)
    stop = EarlyStop(thresholds=((0.25, float(curve[fitness.epochs // 2]) - 1.0),))  # nothing can be that good
    pruned = fitness.evaluate(Trial(0, config, budget, 0, early_stop=stop))
    assert pruned.status is TrialStatus.PRUNED and pruned.metrics["train_tokens"] == math.ceil(
        0.25 * fitness.epochs
    )  # the first epoch at 1/4


def test_a_cached_run_is_keyed_by_its_method_s_code_and_settings_only(monkeypatch):
    from evobench.budget_runs import code_of
    from evobench.methods import fidelity

    before = {m: code_of(m) for m in ("ga", "ga-pop4", "random", "optuna-tpe-hb")}
    assert code_of("ga-pop4") != code_of("ga-pop16")  # a lever's settings are part of it
    monkeypatch.setitem(fidelity.LEVERS, "ga-pop4", {"population_size": 5})
    assert code_of("ga-pop4") != before["ga-pop4"]
    monkeypatch.setitem(fidelity.LEVERS, "ga-new", {"population_size": 6})  # a method added beside them
    assert {m: code_of(m) for m in ("ga", "random", "optuna-tpe-hb")} == {
        m: before[m] for m in ("ga", "random", "optuna-tpe-hb")
    }
