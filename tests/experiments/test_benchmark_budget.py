"""experiments/benchmark_budget.py: the tables at 1/16, 1/8, 1/4, 1/2 and all of the budget, the summary over
tasks, the peers' spaces, refusals, and the cache that keeps a stopped benchmark's runs."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evo import SearchSpace
from evobench.budget import READOUTS, Runs, best_peer, summary, tables, verdicts
from evobench.methods.mf_peers import configspace, decode
from evobench.tasks.fidelity import TASKS

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("smac") is None, reason="the bench extra (optuna, smac) is not installed"
)


def test_quick_benchmark_prints_every_read_out_and_the_verdicts(tmp_path):
    out_file = tmp_path / "budget.md"
    done = subprocess.run(
        [sys.executable, "experiments/benchmark_budget.py", "--quick", "--out", str(out_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    text = out_file.read_text()
    assert (
        "| method | 1/16 | 1/8 | 1/4 | 1/2 | all | to the best peer's final | s a run | ga vs it: 1/16, 1/8, 1/4, 1/2, all |"
        in text
    )
    for method in ("ga", "random", "optuna-tpe"):
        assert f"| {method} | " in text
    assert "split dev (seeds 0-2)" in text and "### Over the tasks" in text
    assert text.strip() in done.stdout


def test_a_peer_missing_its_package_is_refused_before_anything_runs(monkeypatch):
    if importlib.util.find_spec("dehb") is not None:
        pytest.skip("dehb is installed here")
    done = subprocess.run(
        [sys.executable, "experiments/benchmark_budget.py", "--methods", "ga", "dehb", "--seeds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "dehb" in done.stderr and "pip install" in done.stderr


def test_every_configspace_sample_decodes_to_a_genome_of_our_space():
    for spec in (TASKS["synthetic"].space, TASKS["smollm2"].space):
        space = SearchSpace.from_spec(spec)
        for config in configspace(space, seed=3).sample_configuration(50):
            assert space.contains(decode(dict(config), space)), dict(config)


def _runs(values: dict[str, list[float]], task: str = "t") -> Runs:
    """One whole-budget trial per seed at the end of the budget, and nothing before."""
    return Runs(task, 100, {m: [[(100, v, 0.0)] for v in vs] for m, vs in values.items()})


def test_verdicts_and_the_best_peer_follow_the_values():
    better, worse = list(np.linspace(1.0, 1.1, 10)), list(np.linspace(2.0, 2.1, 10))
    runs = _runs({"ga": better, "optuna-tpe": worse, "random": list(np.linspace(3.0, 3.1, 10))})
    assert best_peer(runs) == "optuna-tpe"
    assert verdicts(runs, "ga", "optuna-tpe")[-1] == 1 and verdicts(runs, "optuna-tpe", "ga")[-1] == -1
    assert verdicts(runs, "ga", "optuna-tpe")[: len(READOUTS) - 1] == [0, 0, 0, 0]  # nothing found before the end
    assert runs.to_reach("ga", 2.0) == 1.0 and runs.to_reach("random", 2.0) == float("inf")
    assert "| random | inf | inf | inf | inf | 3.044 | not reached | - |" in tables([runs])
    # nothing found before the end (inf against inf is neither lower nor higher); at the end lower, and a win
    assert "| optuna-tpe (of 1) | 0/0 (0+ 0-) | 0/0 (0+ 0-) | 0/0 (0+ 0-) | 0/0 (0+ 0-) | 1/0 (1+ 0-) |" in summary(
        [runs]
    )


def test_the_summary_counts_tasks_ranks_methods_and_the_compute_to_reach_the_best_peer():
    low, mid, high = (list(np.linspace(a, a + 0.1, 10)) for a in (1.0, 2.0, 3.0))
    first = _runs({"ga": low, "optuna-tpe": mid, "random": high}, "a")
    second = _runs({"ga": high, "optuna-tpe": low, "random": mid}, "b")
    text = summary([first, second])
    assert "| optuna-tpe (of 2) | 0/0 (0+ 0-) | 0/0 (0+ 0-) | 0/0 (0+ 0-) | 0/0 (0+ 0-) | 1/1 (1+ 1-) |" in text
    assert "| random (of 2) | 0/0 (0+ 0-) | 0/0 (0+ 0-) | 0/0 (0+ 0-) | 0/0 (0+ 0-) | 1/1 (1+ 1-) |" in text
    # ranks at the end: ga 1 then 3, TPE 2 then 1, random 3 then 2; before it all tie at 2
    assert "| ga | 2.00 | 2.00 | 2.00 | 2.00 | 2.00 |" in text
    assert "| optuna-tpe | 2.00 | 2.00 | 2.00 | 2.00 | 1.50 |" in text
    # the best peer's final: TPE's on a (2.0...), TPE's on b (1.0...): ga reaches a's at the end, never b's;
    # the median task of two is the lower middle one, reached: 1.00x
    assert text.splitlines()[-3].endswith("| 1.00x |")


def _ledger_runs(points_by_method: dict[str, list[list[tuple]]]) -> Runs:
    return Runs("t", 100, points_by_method)


def test_a_result_counts_from_the_read_out_where_its_trial_finished():
    early = [[(5, 2.0, 0.0), (100, 1.0, 0.0)]] * 3  # found 2.0 at 1/20 of the budget, 1.0 at the end
    runs = _ledger_runs({"ga": early, "random": [[(50, 1.5, 0.0)]] * 3})
    assert list(runs.best("ga", r)[0] for r in READOUTS) == [2.0, 2.0, 2.0, 2.0, 1.0]
    assert list(runs.best("random", r)[0] for r in READOUTS) == [np.inf, np.inf, np.inf, 1.5, 1.5]


def _medians(split: str) -> dict[str, dict[str, list[str]]]:
    """A committed results table's medians at 1/8, 1/4, 1/2 and all, by task and method, as written."""
    report = (ROOT / "experiments" / "results" / f"budget_{split}.md").read_text()
    medians: dict[str, dict[str, list[str]]] = {}
    for block in report.split("\n### ")[1:4]:  # synthetic, pydoc, chat; then "Over the tasks"
        rows = ([c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()[1:])
        medians[block.split(":")[0]] = {cells[0]: cells[1:5] for cells in rows if len(cells) > 5}
    return medians


def test_the_docs_tables_are_the_committed_results():
    """docs/benchmarks.md quotes budget_report.md: each row of its median table is that method's
    row there, and its counts over the tasks are the report's summary."""
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    section = docs[docs.index("## The best config per unit of compute") : docs.index("## Wide: all 24 BBOB")]
    report = (ROOT / "experiments" / "results" / "budget_report.md").read_text()
    names = {
        "**default**": "ga", "every trial to its budget": "ga-full", "Optuna TPE": "optuna-tpe",
        "TPE + Hyperband": "optuna-tpe-hb", "TPE + median": "optuna-tpe-median", "random search": "random",
    }  # fmt: skip
    medians = _medians("report")
    task, quoted = "", 0
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != 7 or cells[0] in ("task", "---"):
            continue
        task = cells[0] or task
        method = names[next(n for n in names if cells[1].startswith(n))]
        assert [c.strip("*") for c in cells[2:6]] == medians[task][method], (task, method)
        quoted += 1
    assert quoted == 18
    lower = report[report.index("| ga's median lower than") :]
    for peer, counts in (("optuna-tpe", "3, 3, 3, 2"), ("optuna-tpe-hb", "1, 2, 3, 1")):
        assert f"| {peer} | " + " | ".join(f"{c} of 3" for c in counts.split(", ")) + " |" in lower
        assert counts in section


def test_the_docs_counts_of_lower_medians_are_the_committed_results():
    """Read-outs (task x read-out x {TPE, TPE + Hyperband}) where each of ours has the lower median."""
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    for split, label in (("dev", "development, seeds 0-29"), ("report", "report, seeds 1000-1019")):
        counts = [
            sum(
                float(rows[ours][i]) < float(rows[peer][i])
                for rows in _medians(split).values()
                for peer in ("optuna-tpe", "optuna-tpe-hb")
                for i in range(4)
            )
            for ours in ("ga", "ga-es", "ga-mf", "ga-full")
        ]
        assert f"| {label} | " + " | ".join(map(str, counts)) + " |" in docs
