"""A run budget (trials, training tokens, hours) ends every strategy, resumes, and shows itself.

Exact resume after SIGKILLs with a trials and a tokens budget is in test_kill_resume.py.
"""

from __future__ import annotations

import copy
import re

import pytest

from evo import RunAborted, RunStore, evolve, parse_config, resume_run, start_run
from evo.cli import main
from evo.config import MAX_GENERATIONS, RunBudget
from evo.evaluation import Spending
from evo.trial import Budget, ConfigError, FitnessBase, Objective, TrialResult, TrialStatus
from fitness.synthetic import SyntheticFitness


def _run(config: dict, run_dir):
    cfg = parse_config(config)
    return start_run(cfg, SyntheticFitness.from_spec(cfg.fitness), run_dir)


def _trials(run_dir) -> list:
    with RunStore.open(run_dir) as store:
        return store.trials()


MODES = {
    "steady_state": {},
    "generational": {"mode": "generational"},
    "multi_fidelity": {"mode": "multi_fidelity", "multi_fidelity": {"eta": 3, "min_fidelity": 1 / 9}},
    "pbt": {"mode": "pbt", "pbt": {"interval": 0.25}},
}


@pytest.mark.parametrize("mode", list(MODES))
def test_every_strategy_ends_at_its_trials_budget(mode, synthetic_config, tmp_path):
    synthetic_config["evolution"].update(MODES[mode], generations=50)
    synthetic_config["run_budget"] = {"trials": 17}
    _run(synthetic_config, tmp_path / mode)
    assert len(_trials(tmp_path / mode)) == 17  # rungs and PBT intervals count as the trials they are


def test_without_generations_a_budget_runs_until_it_is_spent(synthetic_config, tmp_path):
    del synthetic_config["evolution"]["generations"]
    synthetic_config["run_budget"] = {"trials": 40}
    assert parse_config(synthetic_config).evolution.generations == MAX_GENERATIONS
    result = _run(synthetic_config, tmp_path / "run")
    assert len(_trials(tmp_path / "run")) == 40 and result.best_trials


def test_a_tokens_budget_starts_no_trial_it_cannot_pay_for(synthetic_config, tmp_path):
    synthetic_config["budget"] = {"tokens": 4096}
    synthetic_config["run_budget"] = {"train_tokens": 50_000}
    _run(synthetic_config, tmp_path / "run")
    spent = sum(t.metrics["train_tokens"] for t in _trials(tmp_path / "run"))
    assert spent <= 50_000 < spent + 4096  # a trial plans its whole 4,096 tokens: one more would not fit
    assert len(_trials(tmp_path / "run")) >= 50_000 // 4096


def test_a_tokens_budget_over_a_steps_budget_plans_from_the_trials_so_far(synthetic_config, tmp_path):
    synthetic_config["run_budget"] = {"train_tokens": 400_000}
    _run(synthetic_config, tmp_path / "run")
    tokens = [t.metrics["train_tokens"] for t in _trials(tmp_path / "run")]
    assert sum(tokens) <= 400_000 + max(tokens) and len(tokens) < 6 + 4 * 6  # ended before the generations did


def test_an_hours_budget_ends_the_run_and_its_time_adds_up_over_resumes(synthetic_config, tmp_path):
    synthetic_config["fitness"]["seconds_per_trial"] = 0.05
    synthetic_config["evolution"]["generations"] = 1000
    synthetic_config["run_budget"] = {"hours": 0.6 / 3600}
    _run(synthetic_config, tmp_path / "run")
    first = len(_trials(tmp_path / "run"))
    with RunStore.open(tmp_path / "run") as store:
        assert store.meta("driver_seconds") >= 0.6 and 5 <= first < 60
    fitness = SyntheticFitness.from_spec(synthetic_config["fitness"])
    resume_run(tmp_path / "run", fitness, run_budget={"hours": 1.2 / 3600})  # 0.6 s more
    with RunStore.open(tmp_path / "run") as store:
        assert store.meta("driver_seconds") >= 1.2 and len(store.trials()) > first


def test_a_resumed_run_with_a_larger_budget_ends_as_one_that_had_it_from_the_start(synthetic_config, tmp_path):
    small, large = copy.deepcopy(synthetic_config), copy.deepcopy(synthetic_config)
    small["run_budget"], large["run_budget"] = {"trials": 11}, {"trials": 23}
    _run(large, tmp_path / "whole")
    _run(small, tmp_path / "grown")
    assert len(_trials(tmp_path / "grown")) == 11
    result = resume_run(tmp_path / "grown", SyntheticFitness.from_spec(small["fitness"]), run_budget={"trials": 23})
    assert [(t.config, t.values) for t in _trials(tmp_path / "grown")] == [
        (t.config, t.values) for t in _trials(tmp_path / "whole")
    ]
    assert result.best_trials[0].values == evolve_like(large).best_trials[0].values
    with RunStore.open(tmp_path / "grown") as store:  # the new budget is the run's now
        assert store.meta("config")["run_budget"] == {"trials": 23}
    assert "trials: 23" in (tmp_path / "grown" / "config.yaml").read_text()


def evolve_like(config: dict):
    cfg = parse_config(config)
    return evolve(
        cfg.space.to_spec(),
        SyntheticFitness.from_spec(cfg.fitness),
        budget=cfg.budget,
        evolution=config["evolution"],
        seed=cfg.seed,
        fixed=cfg.fixed,
        run_budget=config["run_budget"],
    )


def test_the_python_api_takes_a_run_budget(synthetic_config):
    result = evolve(
        synthetic_config["search_space"],
        SyntheticFitness(),
        budget=Budget(steps=50),
        evolution={"population_size": 4},
        run_budget={"trials": 9},
    )
    assert len(result.best_trials) >= 1 and len(result.history) >= 1


def test_status_and_progress_show_what_is_spent_and_left(synthetic_config, write_config, tmp_path, capsys):
    synthetic_config["run_budget"] = {"trials": 12, "hours": 2}
    config = str(write_config(synthetic_config))
    assert main(["run", config, "--out", str(tmp_path / "run"), "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert "| trials 12/12, hours 0.00/2.00 | ETA" in err
    assert main(["status", str(tmp_path / "run")]) == 0
    assert "run budget: trials 12/12, hours 0.00/2.00 (spent)" in capsys.readouterr().out
    assert main(["resume", str(tmp_path / "run"), "run_budget.trials=14", "--quiet", "--no-plots"]) == 0
    capsys.readouterr()
    assert main(["status", str(tmp_path / "run")]) == 0
    assert "run budget: trials 14/14" in capsys.readouterr().out


@pytest.mark.parametrize(
    "run_budget, message",
    [
        ({}, "run_budget: set trials, train_tokens or hours"),
        ({"trials": 0}, "run_budget.trials: must be a whole number >= 1"),
        ({"hours": -1}, "run_budget.hours: must be a number > 0"),
        ({"train_tokens": 1.5}, "run_budget.train_tokens: must be a whole number"),
        ({"trails": 10}, "run_budget.trails: unknown key (did you mean trials?)"),
    ],
)
def test_a_bad_run_budget_is_one_line(run_budget, message, synthetic_config):
    synthetic_config["run_budget"] = run_budget
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(synthetic_config)


def test_resume_changes_only_the_run_budget(synthetic_config, write_config, tmp_path, capsys):
    synthetic_config["run_budget"] = {"trials": 8}
    assert main(["run", str(write_config(synthetic_config)), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    before = (tmp_path / "run" / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["resume", str(tmp_path / "run"), "evolution.generations=2"]) == 2
    assert "evolution.generations: evo resume changes only run_budget.*" in capsys.readouterr().err
    assert main(["resume", str(tmp_path / "run"), "run_budget.hours=0"]) == 2
    assert "run_budget.hours: must be a number > 0" in capsys.readouterr().err
    assert (tmp_path / "run" / "config.yaml").read_text() == before and len(_trials(tmp_path / "run")) == 8


class RaisesPastNinety(FitnessBase):
    """A user's fitness with a bug: it raises for x > 0.9 and reports its train_tokens otherwise
    (or never, ``reports=False``)."""

    objectives = (Objective("loss"),)

    def __init__(self, reports: bool = True):
        self.reports = reports

    def fingerprint(self):
        return f"raises-past-0.9-{self.reports}"

    def evaluate(self, trial):
        if trial.config["x"] > 0.9:
            raise RuntimeError("CUDA out of memory")
        metrics = {"train_tokens": 50 * trial.budget.steps} if self.reports else {}
        return TrialResult.complete({"loss": (trial.config["x"] - 0.9) ** 2}, metrics=metrics)  # best at the edge


def _evolve_raising(run_dir, fitness, **kwargs):
    return evolve(
        {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        fitness,
        budget=Budget(steps=10),
        evolution={"population_size": 6, "generations": 100, "max_consecutive_failures": 1000},
        seed=1,
        run_dir=run_dir,
        **kwargs,
    )


def test_a_failed_trial_counts_its_tokens_or_none_and_the_run_goes_on(tmp_path):
    """The issue's case: a trial raising under a tokens run budget over a steps budget ended the
    run with a ConfigError mid-run; it counts nothing and the run ends by its budget."""
    result = _evolve_raising(tmp_path / "run", RaisesPastNinety(), run_budget={"train_tokens": 20_000})
    trials = _trials(tmp_path / "run")
    failed = [t for t in trials if t.status is TrialStatus.FAILED]
    assert failed and all("train_tokens" not in t.metrics for t in failed)  # raised: nothing reported
    spent = sum(t.metrics.get("train_tokens", 0) for t in trials)
    assert spent <= 20_000 < spent + 500 and result.best_trials  # ended by the budget, with its trials counted
    with RunStore.open(tmp_path / "run") as store:  # a resumed run counts the same: nothing left to pay for
        reopened = Spending.open(store, RunBudget(train_tokens=20_000), Budget(steps=10))
    assert reopened.tokens == spent and reopened.trials == len(trials) and not reopened.allows()


def test_a_fitness_that_never_reports_tokens_stops_the_run_as_aborted_not_as_bad_input(tmp_path):
    """Nothing can know before a trial ends that a fitness reports no train_tokens: the run stops
    (RunAborted: the CLI's exit 3, resumable), which a failed trial alone never does."""
    with pytest.raises(RunAborted, match="reported no train_tokens for trial"):
        _evolve_raising(tmp_path / "run", RaisesPastNinety(reports=False), run_budget={"train_tokens": 5000})
    assert any(t.ok for t in _trials(tmp_path / "run"))  # what ran is kept
