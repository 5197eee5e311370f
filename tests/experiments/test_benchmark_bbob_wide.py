"""experiments/benchmark_bbob_wide.py --quick: runs, resumes from its results file, reports and writes the table."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("optuna") is None or importlib.util.find_spec("ioh") is None,
    reason="the bench extra (optuna, ioh) is not installed",
)


def _run(results: Path, table: Path, *methods: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "experiments/benchmark_bbob_wide.py", "--quick", "--split", "dev", "--jobs", "1"]
    argv += ["--results", str(results), "--table", str(table), "--methods", *methods]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # tens of seconds: run with -m slow
def test_quick_run_reports_resumes_and_writes_the_table(tmp_path):
    results, table = tmp_path / "runs.jsonl", tmp_path / "table.md"
    first = _run(results, table, "default", "optuna-tpe", "random")
    assert first.returncode == 0, first.stderr
    lines = results.read_text().splitlines()
    assert len(lines) == 2 * 2 * 3 * 3  # functions x dims x seeds x methods
    for method in ("default", "optuna-tpe", "random"):
        for budget in (50, 100, 200):
            assert f"| {method} | {budget} | " in first.stdout
    assert "f1 sphere, d=2" in table.read_text() and "f15 rastrigin, d=5" in table.read_text()
    # a torn last line (a killed run) is skipped; only the missing run is redone, the rest is read back
    results.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40])
    again = _run(results, table, "random")
    assert again.returncode == 0, again.stderr
    assert len([x for x in results.read_text().splitlines() if x.endswith("}")]) == len(lines)
    assert first.stdout.splitlines()[2:] == again.stdout.splitlines()[2:]  # the same report


def test_a_report_without_its_references_says_which_runs_are_missing(tmp_path):
    done = _run(tmp_path / "runs.jsonl", tmp_path / "t.md", "random")
    assert done.returncode != 0 and "runs missing for the report" in done.stderr


def test_curves_survive_compression_and_the_statistics_call_what_is_clear():
    from evobench.curves import compress, expand
    from evobench.stats import compare, median_to_reach

    curve = np.minimum.accumulate(np.array([5.0, 3.0, 3.0, 4.0, 1e-3, 2.0] + [1e-3] * 194))
    steps = compress(curve)
    assert steps == [[1, round(np.log10(5.0), 6)], [2, round(np.log10(3.0), 6)], [5, -3.0]]
    assert np.allclose(expand(steps, 200), np.log10(curve), atol=1e-6)
    low, high = np.arange(15.0), np.arange(15.0) + 100
    assert compare(low, high) == 1 and compare(high, low) == -1 and compare(low, low + 0.5) == 0
    assert median_to_reach(np.array([np.log10(curve)] * 3), -2.0) == 5
