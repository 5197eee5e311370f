"""Which genes mattered: evo status --importance, evo report and evo plot on a finished
synthetic run; the note when there are too few trials; and the genes that could be fixed,
checked against the landscape (fixing them loses nothing)."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import yaml

from evo import RunStore, parse_config, start_run
from evo.cli import main
from evo.reporting._importance import MIN_TRIALS, importance
from evo.reporting._rundata import load_run
from evo.reporting.plots._importance_figure import importance_figure
from evo.storage import BASELINE_GENERATION
from fitness import make_fitness
from tests.conftest import ROOT
from tests.evo.strategies.test_strategies_unchanged import SCENARIOS

SYNTHETIC = yaml.safe_load((ROOT / "experiments" / "synthetic.yaml").read_text())


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """experiments/synthetic.yaml run to its end without early stopping (170 whole-budget trials
    of 12 genes; with it about half are stopped, and stopped trials are not ranked)."""
    run_dir = tmp_path_factory.mktemp("importance") / "demo"
    config = str(ROOT / "experiments" / "synthetic.yaml")
    argv = ["run", config, "--out", str(run_dir), "--quiet", "--no-plots", "evolution.early_stopping=null"]
    assert main(argv) == 0
    return run_dir


def _status(run_dir, capsys) -> list[str]:
    capsys.readouterr()
    assert main(["status", str(run_dir), "--importance"]) == 0
    out = capsys.readouterr().out
    return out[out.index("hyperparameter importance") :].splitlines()


def test_status_ranks_every_gene_and_names_those_that_could_be_fixed(finished, capsys):
    lines = _status(finished, capsys)
    with RunStore.open(finished) as store:
        searched = [t for t in store.trials() if t.ok and t.full and t.generation != BASELINE_GENERATION]
    # the baseline sets 5 of the 12 genes: it is left out, with every whole-budget trial of the search kept
    assert lines[0] == f"hyperparameter importance (fANOVA, val_perplexity, {len(searched)} whole-budget trials):"
    rows = [line.split() for line in lines[1:13]]
    assert sorted(r[0] for r in rows) == sorted(SYNTHETIC["search_space"])
    scores = [float(r[1]) for r in rows]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1, abs=0.01)
    assert not any(line.startswith("note:") for line in lines)  # 170 trials for 12 genes: trusted
    (fix,) = [line for line in lines if line.startswith("could be fixed")]
    fixed = yaml.safe_load(fix.split(": ", 1)[1])["fixed"]
    capsys.readouterr()
    assert main(["best", str(finished)]) == 0
    best_id = yaml.safe_load(capsys.readouterr().out)["trial_id"]
    with RunStore.open(finished) as store:
        best = store.trial(best_id).config
    assert fixed and fixed == {k: best[k] for k in fixed}  # the best trial's values
    scores = importance(finished).scores  # the least important: under half an equal share
    assert set(fixed) == {gene for gene, score in scores.items() if score < 0.5 / 12}


@pytest.mark.slow  # tens of seconds: run with -m slow
def test_fixing_the_genes_that_could_be_fixed_loses_nothing(finished, tmp_path):
    """The synthetic landscape says what matters: weight decay moves log-perplexity by at most
    0.0005, under the noise (0.01); the learning rate sets the step that decides the rest."""
    found = importance(finished)
    assert "weight_decay" in found.fixable and "learning_rate" not in found.fixable
    narrowed = copy.deepcopy(SYNTHETIC)
    for gene, value in found.fixable.items():
        del narrowed["search_space"][gene]
        narrowed["fixed"][gene] = value
    again = {**copy.deepcopy(SYNTHETIC), "seed": 100}  # another seed of each, so neither replays the first
    narrowed["seed"] = 100
    bests = []
    for name, raw in (("again", again), ("narrowed", narrowed)):
        config = parse_config(raw)
        bests.append(start_run(config, make_fitness(config.fitness), tmp_path / name).best_trials[0])
    again_best, narrowed_best = (t.values["val_perplexity"] for t in bests)
    assert narrowed_best <= again_best * 1.01  # as good as the whole space searched again


def test_report_and_plot_show_it(finished, capsys):
    found = importance(finished)
    assert main(["report", str(finished)]) == 0
    html = (finished / "report.html").read_text()
    assert "<h2>What mattered</h2>" in html
    assert f"fANOVA importance for val_perplexity over {found.trials} whole-budget trials" in html
    assert f"<pre>{found.fixed_yaml()}</pre>" in html
    assert all(f"<td>{gene}</td><td class='num'>{score:.3f}</td>" in html for gene, score in found.scores.items())
    figure = (
        finished / "plots" / "importance.png"
    )  # evo report drew every figure (tests/evo/reporting/test_plots.py: evo plot too)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert importance_figure(load_run(finished), figure) == {
        "scores": found.scores,
        "trials": found.trials,
        "trusted": True,
        "fixable": found.fixable,
    }


def test_too_few_trials_is_a_note_and_a_few_more_a_hint(tmp_path, synthetic_config, capsys):
    synthetic_config["evolution"]["generations"] = 0  # 6 trials, some of which diverge
    config = parse_config(synthetic_config)
    start_run(config, make_fitness(config.fitness), tmp_path / "six")
    with RunStore.open(tmp_path / "six") as store:
        complete = sum(1 for t in store.trials() if t.ok)
    note = f"{complete} completed whole-budget trials; it needs {MIN_TRIALS}"
    assert _status(tmp_path / "six", capsys) == [f"hyperparameter importance: {note}"]
    assert main(["plot", str(tmp_path / "six")]) == 0
    assert f"importance: not drawn, {note}" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "six")]) == 0
    assert f"Hyperparameter importance: {note}." in (tmp_path / "six" / "report.html").read_text()

    config = parse_config(SCENARIOS["multi_fidelity"]())  # rungs are trained to part of the budget: left out
    start_run(config, make_fitness(config.fitness), tmp_path / "rungs")
    with RunStore.open(tmp_path / "rungs") as store:
        full = sum(1 for t in store.trials() if t.ok and t.full)
        partial = sum(1 for t in store.trials() if t.ok and not t.full)
    assert partial and importance(tmp_path / "rungs").trials == full

    synthetic_config["evolution"]["generations"] = 4
    config = parse_config(synthetic_config)
    start_run(config, make_fitness(config.fitness), tmp_path / "thirty")
    lines = _status(tmp_path / "thirty", capsys)
    found = importance(tmp_path / "thirty")
    assert found.scores and not found.trusted
    assert f"note: only {found.trials} whole-budget trials for 7 genes: a hint until about 70" in lines


def test_without_its_packages_status_refuses_and_the_report_says_why(finished, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    capsys.readouterr()
    assert main(["status", str(finished), "--importance"]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # refused before the table
    assert err == "evo: error: --importance needs scikit-learn: pip install 'evo-qlora[dashboard]'\n"
    assert main(["report", str(finished), "--out", str(finished / "without.html")]) == 0
    html = (finished / "without.html").read_text()
    assert "Hyperparameter importance: needs scikit-learn: pip install &#x27;evo-qlora[dashboard]&#x27;." in html


def test_trials_that_all_score_the_same_are_a_note(tmp_path, capsys):
    """Genes the synthetic fitness does not read, and no noise: every trial scores the same."""
    config = parse_config(
        {
            "seed": 1,
            "fitness": {"type": "synthetic", "noise": 0.0},
            "budget": {"steps": 20},
            "evolution": {"population_size": 12, "generations": 2},
            "search_space": {
                "optim": {"type": "categorical", "choices": ["adamw_torch", "adafactor", "paged_adamw_8bit"]},
                "bnb_4bit_quant_type": {"type": "categorical", "choices": ["nf4", "fp4"]},
                "gradient_checkpointing": {"type": "bool"},
                "bnb_4bit_use_double_quant": {"type": "bool"},
            },
            "fixed": {"max_seq_length": 128},
        }
    )
    start_run(config, make_fitness(config.fitness), tmp_path / "flat")
    found = importance(tmp_path / "flat")
    assert found.trials >= MIN_TRIALS and not found.scores
    assert _status(tmp_path / "flat", capsys) == [
        f"hyperparameter importance: the {found.trials} whole-budget trials all scored the same: no gene mattered"
    ]
