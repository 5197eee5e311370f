"""``evo plan``: the trials a run trains, counted from its settings, and the fitness's plan formatted.

The synthetic fitness has no memory plan; the QLoRA fitness's (tests/fitness/qlora/test_plan.py)
is formatted here from a plan written by hand, so the engine's side runs without torch.
"""

from __future__ import annotations

import pytest

from evo.cli import main
from evo.config import parse_config
from evo.run._plan import count, gene_values, render
from tests.conftest import ROOT


def config_of(raw):
    return parse_config(raw)


@pytest.mark.parametrize(
    "evolution, baseline, trials, budgets",
    [
        ({"population_size": 6, "generations": 4, "mode": "generational"}, False, 6 + 4 * 6, 30),
        ({"population_size": 6, "generations": 4, "offspring_size": 3, "mode": "steady_state"}, True, 1 + 6 + 12, 19),
        # rungs 1/9, 1/3, 1 at eta 3: 6 -> 2 -> 1 trials, each continued rung adding only its step
        (
            {"population_size": 6, "generations": 1, "multi_fidelity": True},
            False,
            9 + 9,
            2 * (6 / 9 + 2 * 2 / 9 + 2 / 3),
        ),
        ({"population_size": 6, "mode": "pbt", "pbt": {"interval": 0.25}}, False, 6 * 4, 6),
    ],
    ids=["generational", "steady-state-with-baseline", "multi-fidelity", "pbt"],
)
def test_trials_are_counted_as_each_mode_trains_them(synthetic_config, evolution, baseline, trials, budgets):
    synthetic_config["evolution"] = evolution
    if baseline:
        synthetic_config["baseline"] = {"learning_rate": 1e-3}
    found = count(config_of(synthetic_config))
    assert found.trials == trials and found.budgets == pytest.approx(budgets) and found.bounded


def test_a_run_budget_of_trials_caps_the_count(synthetic_config):
    synthetic_config["run_budget"] = {"trials": 10}
    found = count(config_of(synthetic_config))  # no generations given: the budget ends the run
    assert (found.trials, found.budgets, found.bounded) == (10, 10, True)
    assert found.how.startswith("run_budget.trials ends it")


def test_each_gene_offers_the_values_a_trial_can_have(synthetic_config):
    synthetic_config["search_space"]["lora_dropout"] = {"type": "float", "low": 0.0, "high": 0.2, "step": 0.05}
    synthetic_config["search_space"]["r"] = {"type": "int", "low": 4, "high": 1028}  # too many: 5 points
    values = gene_values(config_of(synthetic_config))
    assert values["per_device_train_batch_size"] == [1, 2, 4, 8]
    assert values["use_rslora"] == [False, True]
    assert values["lora_dropout"] == [0.0, 0.05, 0.1, 0.15, 0.2]
    assert values["r"] == [4, 260, 516, 772, 1028]
    assert values["learning_rate"] == [1e-5, 5.62e-5, 3.16e-4, 1.78e-3, 1e-2]  # along its log scale
    assert values["max_seq_length"] == [128]  # fixed
    assert values["target_modules"] == ["attention", "all-linear", ["q_proj", "v_proj"]]


def test_evo_plan_of_the_synthetic_config_counts_trials_and_has_no_memory_plan(capsys):
    assert main(["plan", str(ROOT / "experiments" / "synthetic.yaml"), "evolution.generations=2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("trials: 49 at most (1 baseline + 16 initial + 2 generations x 16 children)")
    assert out[1] == "training: budget.steps 100 a trial, 49 whole budgets in all"
    assert out[2] == "the synthetic fitness has no memory plan (it trains no model)"


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["evolution.population_size=1"], "evolution.population_size"),
        (["fitness.nosuch=1"], "fitness.nosuch"),
        (["no_such_section=1"], "no_such_section"),
    ],
)
def test_a_bad_config_is_one_line_and_exit_2(capsys, argv, fragment):
    assert main(["plan", str(ROOT / "experiments" / "synthetic.yaml"), *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("evo: error: ") and fragment in lines[0], captured.err
    assert captured.out == ""


def test_a_missing_config_file_is_one_line_and_exit_2(capsys, tmp_path):
    assert main(["plan", str(tmp_path / "nope.yaml")]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


PLAN = {  # an evo.trial.Plan
    "about": ["model m: its shape read from its config, no weights"],
    "tokens_per_trial": [1000, 1000],
    "seconds_per_trial": [36.0, 36.0],
    "devices": ["24 GB", "80 GB"],
    "shapes": [
        {"shape": "4 x 512", "peak_mb": 20_000.0, "parts": "activations 9,000 MB", "micro_batch": [2, 4]},
        {"shape": "8 x 1024", "peak_mb": 90_000.0, "parts": "activations 70,000 MB", "micro_batch": [None, 2]},
    ],
    "cohort": [1, 3],
    "notes": ["a note"],
}


def test_the_fitness_plan_is_formatted_as_a_table_with_what_does_not_fit(synthetic_config):
    synthetic_config["evolution"] = {"population_size": 4, "generations": 2, "offspring_size": 3}
    text = render(config_of(synthetic_config), PLAN, "qlora")
    lines = text.splitlines()
    assert lines[0].startswith("trials: 10 at most") and lines[1].startswith("training tokens: 1,000 a trial")
    assert "10,000 in all" in lines[1]
    table = [line for line in lines if line.startswith("  ") and "GB" in line and ":" not in line]
    assert table[0].split() == ["shape", "peak", "24", "GB", "80", "GB"]
    assert table[1].split() == ["4", "x", "512", "19.5", "GB", "2", "4"]
    assert table[2].split() == ["8", "x", "1024", "87.9", "GB", "-", "2"]
    assert "would not fit even at micro-batch 1: 24 GB: 8 x 1024" in lines
    assert "every shape trains (at some micro-batch) on: 80 GB" in lines
    assert (
        "cohort: trials of the largest shape trained at once (fitness.cohort, within memory): 24 GB 1, 80 GB 3" in lines
    )
    assert "wall time: about 6 min on 1 device, from measured speeds" in lines  # 10 budgets x 36 s
    assert lines[-1] == "note: a note"


def test_a_run_budget_of_tokens_or_hours_bounds_a_run_without_generations(synthetic_config):
    synthetic_config["evolution"] = {"population_size": 4}
    synthetic_config["run_budget"] = {"train_tokens": 25_000, "hours": 0.05}
    lines = render(config_of(synthetic_config), PLAN, "qlora").splitlines()
    assert lines[0].startswith("trials: 25 at most") and "25,000 (run_budget.train_tokens) in all" in lines[1]
    assert (
        "wall time: run_budget.hours ends it after 0.05 h (its trials would take about 15 min on 1 device, from measured speeds)"
        in lines
    )


def test_devices_share_the_wall_time(synthetic_config):
    synthetic_config["evolution"] = {"population_size": 4, "generations": 2, "offspring_size": 3}
    synthetic_config["executor"] = {"type": "local", "devices": ["a", "b"]}
    assert "wall time: about 3 min on 2 devices" in render(config_of(synthetic_config), PLAN, "qlora")
