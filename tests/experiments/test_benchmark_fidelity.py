"""experiments/benchmark_fidelity.py --quick: every method spends the same tokens, the table prints, the plot is written."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from evobench.ledger import Ledger
from evobench.methods.fidelity import RUNNERS, installed
from evobench.tasks.fidelity import TASKS
from evobench.trial_cache import CachedFitness
from fitness.synthetic import SyntheticFitness

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("optuna") is None, reason="the bench extra (optuna) is not installed"
)


@pytest.mark.slow  # tens of seconds: run with -m slow
def test_quick_benchmark_prints_the_table_and_writes_the_plot(tmp_path):
    plot = tmp_path / "fidelity.png"
    done = subprocess.run(
        [sys.executable, "experiments/benchmark_fidelity.py", "--quick", "--plot", str(plot)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for method in ("ga", "ga-mf", "ga-es", "pbt", "random", "optuna-tpe", "optuna-nsga2", "optuna-tpe-hb"):
        assert f"  {method} " in out
    assert "to ga final" in out and "to optuna-tpe final" in out and "100%" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_method_stops_at_the_same_training_budget():
    task = TASKS["synthetic"]
    limit = 6 * task.budget.tokens
    for method, runner in RUNNERS.items():
        if not installed(method):
            continue
        ledger = Ledger(SyntheticFitness.from_spec(task.fitness), limit)
        runner(task, ledger, 0, 6)
        spent = [p[0] for p in ledger.points]
        assert spent == sorted(spent) and spent[-1] >= 0.75 * limit, method  # used (nearly) all of it...
        before_last = spent[-2] if len(spent) > 1 else 0
        assert before_last < limit, method  # ...and started nothing once it was spent
        assert any(v is not None for _, v, _ in ledger.points), method


def test_every_method_repeats_its_run_for_a_seed():
    """Hyperband's brackets hash the study's name: an unnamed study made optuna-tpe-hb differ run to run."""
    task = TASKS["synthetic"]

    def values(method):
        ledger = Ledger(SyntheticFitness.from_spec(task.fitness), 6 * task.budget.tokens)
        RUNNERS[method](task, ledger, 7, 6)
        return [(tokens, value) for tokens, value, _ in ledger.points]

    for method in filter(installed, RUNNERS):
        assert values(method) == values(method), method


def test_saved_runs_merge_into_the_same_report(tmp_path):
    def bench(*argv):
        done = subprocess.run(
            [sys.executable, "experiments/benchmark_fidelity.py", *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    whole = bench("--quick", "--methods", "ga", "random", "--save", str(tmp_path / "all.json"))
    bench("--quick", "--methods", "ga", "--save", str(tmp_path / "ga.json"))
    bench("--quick", "--methods", "random", "--save", str(tmp_path / "random.json"))
    merged = bench("--merge", str(tmp_path / "ga.json"), str(tmp_path / "random.json"))
    table = lambda out: [line[:100] for line in out.splitlines() if line.startswith(("  ga ", "  random "))]  # noqa: E731
    assert table(merged) == table(whole) and len(table(whole)) == 4  # same numbers; wall time aside
    assert merged[merged.index("seed by seed") :] == whole[whole.index("seed by seed") :]  # a run per seed, named


def test_a_stopped_benchmark_resumes_from_its_trial_cache(tmp_path):
    """A kill leaves the cache with the trials done so far and maybe a cut line; the rerun
    answers those from the cache, trains only the rest, and reports the same numbers."""
    task, cache = TASKS["synthetic"], tmp_path / "trials.jsonl"

    def run(method):
        fitness = CachedFitness(SyntheticFitness.from_spec(task.fitness), cache)
        ledger = Ledger(fitness, 8 * task.budget.tokens)
        RUNNERS[method](task, ledger, 0, 8)
        return fitness, [(spent, value) for spent, value, _ in ledger.points]

    for method in ("ga", "optuna-tpe", "random"):
        cache.unlink(missing_ok=True)
        first, whole = run(method)
        lines = cache.read_text().splitlines()
        assert first.hits == 0 and first.misses == len(lines) == len(whole)
        cache.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])  # killed while writing the fourth
        again, resumed = run(method)
        assert resumed == whole, method
        assert (again.hits, again.misses) == (3, len(whole) - 3), method
        assert len(cache.read_text().splitlines()) == len(whole) + 1  # the cut line stays, unread


def test_the_direct_task_refuses_a_missing_data_file(tmp_path):
    done = subprocess.run(
        [sys.executable, "experiments/benchmark_fidelity.py", "--task", "smollm2-direct", "--data-file", "nope.jsonl"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "nope.jsonl" in done.stderr


def test_set_puts_settings_under_our_methods_and_refuses_bad_ones():
    def bench(*argv):
        return subprocess.run(
            [sys.executable, "experiments/benchmark_fidelity.py", "--quick", *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )

    done = bench("--methods", "ga", "random", "--set", "replacement=nearest", "tournament_size=5")
    assert done.returncode == 0, done.stderr
    assert "  ga[replacement=nearest,tournament_size=5] " in done.stdout and "  random " in done.stdout
    for bad, culprit in (("tournament_size=0", "evolution.tournament_size"), ("sigma", "'sigma' is not KEY=VALUE")):
        done = bench("--methods", "ga", "--set", bad)
        assert done.returncode == 2 and culprit in done.stderr.splitlines()[-1]


def _replay(cache, *argv):
    done = subprocess.run(
        [sys.executable, "experiments/benchmark_fidelity.py", "--task", "smollm2-direct", "--budget", "20"]
        + ["--seeds", "1", "--first-seed", "100", "--cache", str(cache), "--replay-only", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout[done.stdout.index("seed by seed") :]


@pytest.fixture
def direct_cache(tmp_path):
    import shutil

    cache = tmp_path / "trials.jsonl"
    shutil.copy(ROOT / "experiments/results/direct/trials_100.jsonl", cache)
    return cache


def test_the_direct_benchmark_replays_its_committed_real_trials(direct_cache):
    """The real-trial table comes from experiments/results/direct/: its methods must ask for
    exactly the trials recorded there and find the same results. Its default was 0.2's, every
    trial to its budget (today's ``ga-full``), with the previous gamma 0.2 beside it. Recorded on
    a CPU that computed in bf16: a replay keys by the recording's fingerprint and trains nothing,
    so any CPU replays it."""
    import re

    recorded = direct_cache.read_text()
    per_seed = _replay(direct_cache, "--methods", "ga-full", "random")
    assert re.search(r"\n  ga-full +16\.011\n", per_seed) and re.search(r"\n  random +16\.058\n", per_seed)
    per_seed = _replay(direct_cache, "--methods", "ga-full", "--set", "surrogate_gamma=0.2")
    assert re.search(r"\n  ga-full\[surrogate_gamma=0\.2\] +15\.292\n", per_seed)
    assert direct_cache.read_text() == recorded


AVX512 = Path("/proc/cpuinfo").is_file() and " avx512f" in Path("/proc/cpuinfo").read_text()


@pytest.mark.skipif(
    not AVX512,
    reason="Optuna's TPE was recorded on a CPU with AVX-512; without it the same code and packages ask for "
    "another 16th trial (numpy runs other vector kernels, and TPE breaks a near-tie on the last bits)",
)
def test_optuna_tpe_replays_its_committed_real_trials_on_the_recording_cpu(direct_cache):
    import re

    assert re.search(r"\n  optuna-tpe +15\.686\n", _replay(direct_cache, "--methods", "optuna-tpe"))


def test_replay_only_stops_at_the_first_trial_the_cache_does_not_hold(tmp_path):
    done = subprocess.run(
        [sys.executable, "experiments/benchmark_fidelity.py", "--quick", "--methods", "random"]
        + ["--cache", str(tmp_path / "empty.jsonl"), "--replay-only"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "is not in the cache (--replay-only)" in done.stderr.splitlines()[-1]
    assert not (tmp_path / "empty.jsonl").exists() or not (tmp_path / "empty.jsonl").read_text()


@pytest.mark.parametrize(
    "argv, culprit",
    [
        (["--cache", "{tmp}"], "a directory, not a trial-cache file"),
        (["--cache", "{tmp}/not_a_cache.jsonl"], "not_a_cache.jsonl:1: not a trial-cache line"),
        (["--replay-only"], "--replay-only needs --cache"),
        (["--seed-stride", "0"], "--seed-stride: '0' is not a whole number of at least 1"),
    ],
)
def test_bad_cache_and_seed_options_are_refused_before_anything_runs(tmp_path, argv, culprit):
    (tmp_path / "not_a_cache.jsonl").write_text("[1, 2]\n")
    done = subprocess.run(
        [sys.executable, "experiments/benchmark_fidelity.py", "--quick", "--methods", "random"]
        + [a.format(tmp=tmp_path) for a in argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and culprit in done.stderr.splitlines()[-1] and not done.stdout
