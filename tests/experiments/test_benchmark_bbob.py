"""experiments/benchmark_bbob.py --quick: every method runs, the tables print, the plot is written;
and evobench's BBOB fitness maps every gene kind into the box."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("optuna") is None or importlib.util.find_spec("ioh") is None,
    reason="the bench extra (optuna, ioh) is not installed",
)


def test_quick_benchmark_prints_the_tables_and_writes_the_plot(tmp_path):
    plot = tmp_path / "bbob.png"
    done = subprocess.run(
        [sys.executable, "experiments/benchmark_bbob.py", "--quick", "--jobs", "1", "--plot", str(plot)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for method in ("random", "ga", "ga+tpe", "optuna-tpe", "optuna-nsga2"):
        assert f"  {method} " in out
    assert "f1 sphere, 5 dimensions" in out and "f15 rastrigin, 5 dimensions" in out
    assert "n=10" in out and "to target" in out and "summary over 2 problems" in out
    assert "headline:" in out
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_fitness_maps_every_gene_kind_onto_the_bbob_box():
    from evobench.tasks.bbob import BBOBFitness

    fitness = BBOBFitness(1, 5, instance=1)
    kinds = {g.kind.value for g in fitness.space} | {"ordered" for g in fitness.space if g.ordered}
    assert kinds >= {"float", "log_float", "int", "categorical", "ordered"}
    low = {g.name: g.from_unit(0.0) for g in fitness.space}
    high = {g.name: g.from_unit(1.0) for g in fitness.space}
    assert all(-5.0 <= x <= 5.0 for x in fitness.point(low) + fitness.point(high))
    from evo.trial import Budget, Trial

    result = fitness.evaluate(Trial(0, high, Budget(), seed=0))
    assert result.ok and result.values["precision"] > 0 and fitness.trace == [result.values["precision"]]
