"""Plots, report and compare: produced, and drawing exactly what the store holds."""

import numpy as np
import pytest

from evo.cli import main
from evo.config import parse_config
from evo.evaluation import RunAborted
from evo.reporting import write_report
from evo.reporting.plots import NothingToPlot, plot_run
from evo.reporting.plots._compare import compare_runs
from evo.run import start_run
from evo.storage import RunStore
from evo.trial import TrialStatus
from fitness import export_sections
from fitness.synthetic import SyntheticFitness


def make_run(config, run_dir):
    cfg = parse_config(config)
    try:
        start_run(cfg, SyntheticFitness.from_spec(cfg.fitness), run_dir)
    except RunAborted:
        pass
    return run_dir


@pytest.fixture
def failing_run(synthetic_config, tmp_path):
    synthetic_config["fitness"]["failure_rate"] = 0.25
    synthetic_config["baseline"] = {"learning_rate": 2e-4, "r": 64, "lora_alpha": 16}
    return make_run(synthetic_config, tmp_path / "failing")


def test_every_plot_is_written_and_matches_the_store(failing_run):
    report = plot_run(failing_run)
    assert set(report.written) == {
        "generation_fitness",
        "best_vs_compute",
        "gene_evolution",
        "learning_curves",
        "failures",
        "importance",  # tests/evo/reporting/test_importance.py checks what it draws
    }
    assert report.skipped == {"pareto_front": "the run has a single objective"}
    for path in report.written.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000

    with RunStore.open(failing_run) as store:
        gens = store.finished_generations()
        fitness = report.series["generation_fitness"]
        assert fitness["generation"] == gens
        for i, g in enumerate(gens):
            values = [
                store.trial(ind.trial_id).values["val_perplexity"]
                for ind in store.population(g)
                if store.trial(ind.trial_id).ok
            ]
            assert fitness["median"][i] == pytest.approx(np.median(values))
            assert fitness["best"][i] == pytest.approx(min(values))
            assert fitness["worst"][i] == pytest.approx(max(values))
        search = [t for t in store.trials() if t.generation >= 0]
        ok_values = [t.values["val_perplexity"] for t in search if t.ok]
        assert fitness["best_so_far"][-1] == pytest.approx(min(ok_values))
        failed_individuals = [
            i for i in store.individuals() if i.generation >= 0 and store.trial(i.trial_id).status is TrialStatus.FAILED
        ]
        assert len(fitness["failed"]) == len(failed_individuals) > 0

        compute = report.series["best_vs_compute"]
        ordered = sorted(search, key=lambda t: t.finished_at)
        assert compute["compute_unit"] == "train_tokens"
        assert compute["compute"] == pytest.approx(np.cumsum([t.metrics.get("train_tokens", 0) for t in ordered]))
        assert compute["best_so_far"][-1] == pytest.approx(min(ok_values))

        genes = report.series["gene_evolution"]
        members = [i for i in store.individuals() if i.generation >= 0]
        assert genes["learning_rate"] == [
            (
                i.generation,
                i.genome["learning_rate"],
                store.trial(i.trial_id).values.get("val_perplexity") if store.trial(i.trial_id).ok else None,
            )
            for i in members
        ]
        failures = report.series["failures"]
        assert sum(sum(c) for c in failures["counts"].values()) == sum(
            1 for t in search if t.status is TrialStatus.FAILED
        )

        curves = report.series["learning_curves"]
        top = sorted((t for t in search if t.ok), key=lambda t: t.values["val_perplexity"])[:5]
        assert list(curves) == [t.id for t in top]
        assert curves[top[0].id]["train_loss"] == top[0].metrics["train_loss_curve"]


def test_pareto_front_of_a_two_objective_run(synthetic_config, tmp_path):
    synthetic_config["fitness"]["objectives"] = ["val_perplexity", "peak_memory_mb"]
    run_dir = make_run(synthetic_config, tmp_path / "two")
    report = plot_run(run_dir)
    front = {p[2] for p in report.series["pareto_front"]["front"]}
    with RunStore.open(run_dir) as store:
        points = [(t.values["val_perplexity"], t.values["peak_memory_mb"], t.id) for t in store.trials() if t.ok]
    expected = {p[2] for p in points if not any(q[0] <= p[0] and q[1] <= p[1] and q[:2] != p[:2] for q in points)}
    assert front == expected and len(front) >= 2


def test_empty_run_gives_a_clear_message(synthetic_config, tmp_path, capsys):
    cfg = parse_config(synthetic_config)
    RunStore.create(tmp_path / "empty", config=cfg.raw, fingerprint="fp").close()
    with pytest.raises(NothingToPlot, match="no trial has finished"):
        plot_run(tmp_path / "empty")
    assert main(["plot", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing to plot yet" in err[0]
    assert main(["report", str(tmp_path / "empty")]) == 0


def test_one_generation_run_plots(synthetic_config, tmp_path):
    synthetic_config["evolution"]["generations"] = 0
    report = plot_run(make_run(synthetic_config, tmp_path / "one"))
    assert "generation_fitness" in report.written and report.series["generation_fitness"]["generation"] == [0]


def test_all_failed_run_plots_failures_and_explains_the_rest(synthetic_config, tmp_path, capsys):
    synthetic_config["fitness"]["failure_rate"] = 1.0
    synthetic_config["evolution"]["max_consecutive_failures"] = 4
    run_dir = make_run(synthetic_config, tmp_path / "dead")
    assert main(["plot", str(run_dir)]) == 0
    captured = capsys.readouterr()
    assert "failures.png" in captured.out
    assert "no trial of the search has completed" in captured.err and "Traceback" not in captured.err
    html = write_report(run_dir).read_text()
    assert "No trial of the search completed" in html


def test_report_is_self_contained(failing_run):
    html = write_report(failing_run, export_sections=export_sections).read_text()
    assert html.count("data:image/png;base64,") == 6  # every figure of the run, importance among them
    assert "http://" not in html and "https://" not in html and "<script" not in html
    for text in (
        "Best configuration",
        "lora:",
        "training:",
        "Top 10 trials",
        "untuned baseline",
        "Failures",
        "exception",
        "What mattered",
    ):
        assert text in html, text


def test_compare_aligns_runs_on_compute(synthetic_config, tmp_path):
    a = make_run(synthetic_config, tmp_path / "a")
    synthetic_config["evolution"]["strategy"] = "mu_comma_lambda"
    b = make_run(synthetic_config, tmp_path / "b")
    series = compare_runs([a, b], tmp_path / "cmp.png")
    assert set(series["runs"]) == {"a", "b"} and series["compute_unit"] == "train_tokens"
    assert (tmp_path / "cmp.png").stat().st_size > 10_000
    with RunStore.open(b) as store:
        ok = [t.values["val_perplexity"] for t in store.trials() if t.ok]
    assert series["runs"]["b"]["best_so_far"][-1] == pytest.approx(min(ok))


def test_plots_refresh_during_a_cli_run(synthetic_config, write_config, tmp_path):
    run_dir = tmp_path / "run"
    assert main(["run", str(write_config(synthetic_config)), "--out", str(run_dir), "--quiet"]) == 0
    assert (run_dir / "plots" / "generation_fitness.png").is_file()
