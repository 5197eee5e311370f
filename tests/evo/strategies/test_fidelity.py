"""Multi-fidelity generations (successive halving with checkpoint continuation) and the
median stopping rule, on the synthetic fitness's learning-curve model."""

import math

import pytest

from evo.config import EarlyStopping, StopRule, parse_config
from evo.run import start_run
from evo.storage import RunStore
from evo.strategies._context import stopping_rule
from evo.trial import Budget, ConfigError, EarlyStop, Objective, Trial, TrialStatus
from fitness.synthetic import SyntheticFitness


def mf_config(synthetic_config, **evolution):
    synthetic_config["budget"] = {"steps": 90}
    synthetic_config["evolution"].update(
        population_size=4,
        offspring_size=9,
        generations=2,
        multi_fidelity={"eta": 3, "min_fidelity": 1 / 9},
        **evolution,
    )
    return synthetic_config


def run(config, run_dir):
    parsed = parse_config(config)
    fitness = SyntheticFitness.from_spec(parsed.fitness)
    return start_run(parsed, fitness, run_dir)


def test_rungs_promote_the_best_third_and_continue_from_their_checkpoint(synthetic_config, tmp_path):
    run(mf_config(synthetic_config), tmp_path / "run")
    with RunStore.open(tmp_path / "run") as store:
        trials = store.trials()
        by_id = {t.id: t for t in trials}
        for gen, n in ((0, 4), (1, 9), (2, 9)):
            rungs = [
                sorted(t.id for t in trials if t.generation == gen and math.isclose(t.fidelity, f))
                for f in (1 / 9, 1 / 3, 1.0)
            ]
            assert [len(r) for r in rungs] == [n, math.ceil(n / 3), math.ceil(math.ceil(n / 3) / 3)]
            for lower, upper in zip(rungs, rungs[1:]):
                lower_values = sorted(by_id[i].values["val_perplexity"] for i in lower)
                promoted = [by_id[by_id[i].resumed_from] for i in upper]
                assert all(p.id in lower for p in promoted)  # continued a trial of the rung below...
                assert sorted(p.values["val_perplexity"] for p in promoted) == lower_values[: len(upper)]  # ...its best
        assert not (tmp_path / "run" / "checkpoints").exists()  # cleaned up once the generation is done

        fitness = SyntheticFitness()
        for top in (t for t in trials if t.full):
            chain = [top]
            while chain[-1].resumed_from is not None:
                chain.append(by_id[chain[-1].resumed_from])
            assert len(chain) == 3
            one_go = fitness.evaluate(Trial(0, top.config, Budget(steps=90), chain[-1].seed))
            # the step counter and the loss curve continue; compute is counted once
            assert [t.metrics["start_step"] for t in chain[::-1]] == [0, 10, 30]
            assert top.metrics["train_loss_curve"] == [list(p) for p in one_go.metrics["train_loss_curve"]]
            assert sum(t.metrics["train_tokens"] for t in chain) == one_go.metrics["train_tokens"]
            assert top.values["val_perplexity"] == one_go.values["val_perplexity"]


def test_survivors_rank_whole_budget_members_first_and_best_is_whole_budget(synthetic_config, tmp_path):
    result = run(mf_config(synthetic_config), tmp_path / "run")
    with RunStore.open(tmp_path / "run") as store:
        for gen in store.finished_generations():
            fidelities = [store.trial(ind.trial_id).fidelity for ind in store.population(gen)]
            assert fidelities == sorted(fidelities, reverse=True)
        assert all(t.full for t in result.best_trials)
        stats = store.generation_stats()
        assert [s["evals"] for s in stats] == [4 + 2 + 1, 9 + 3 + 1, 9 + 3 + 1]


def test_multi_fidelity_uses_less_compute_than_training_every_genome_fully(synthetic_config, tmp_path):
    run(mf_config(synthetic_config), tmp_path / "mf")
    with RunStore.open(tmp_path / "mf") as store:
        trials = [t for t in store.trials() if t.generation >= 0]
        mf_tokens = sum(t.metrics["train_tokens"] for t in trials)
        full_tokens = sum(
            SyntheticFitness().evaluate(Trial(0, t.config, Budget(steps=90), 1)).metrics["train_tokens"]
            for t in trials
            if math.isclose(t.fidelity, 1 / 9)
        )
    assert mf_tokens < 0.5 * full_tokens


def test_multi_fidelity_config_errors(synthetic_config):
    with pytest.raises(ConfigError, match="evolution.multi_fidelity.eta"):
        parse_config(mf_config(synthetic_config) | {"evolution": {"multi_fidelity": {"eta": 1}}})
    with pytest.raises(ConfigError, match="evolution.multi_fidelity.min_fidelity"):
        parse_config({**synthetic_config, "evolution": {"multi_fidelity": {"min_fidelity": 1.5}}})
    with pytest.raises(ConfigError, match="evolution.multi_fidelity: works with mode: generational"):
        parse_config({**synthetic_config, "evolution": {"multi_fidelity": True, "mode": "steady_state"}})
    two = {
        **synthetic_config,
        "fitness": {"type": "synthetic", "objectives": ["val_perplexity", "peak_memory_mb"]},
        "evolution": {"multi_fidelity": True},
    }
    with pytest.raises(ConfigError, match="ranks rungs by one objective"):
        run(two, None)


# -- early stopping: the median rule, and halving (the default where curves are reported) -----
def synthetic_trial(lr, early_stop, seed=1):
    return SyntheticFitness().evaluate(Trial(0, {"learning_rate": lr}, Budget(steps=80), seed, early_stop=early_stop))


def test_median_rule_stops_a_planted_bad_curve_and_not_a_good_one():
    rule = stopping_rule(EarlyStopping(rule=StopRule.MEDIAN, min_trials=3, warmup=0.2), Objective("val_perplexity"))
    for seed, lr in enumerate((3e-4, 5e-4, 1e-3)):  # middling runs make the median
        record = type("R", (), {})()
        result = synthetic_trial(lr, None, seed)
        record.ok, record.metrics = True, result.metrics
        rule.add(record)
    stop = rule.early_stop()
    assert stop.thresholds and stop.thresholds[0][0] >= 0.2  # nothing stopped during the warm-up

    bad = synthetic_trial(1e-5, stop)  # barely trains: its curve sits far above the median
    assert bad.status is TrialStatus.PRUNED and bad.reason is None
    step = bad.metrics["pruned_at_step"]
    assert step == bad.metrics["steps"] < 80 and step / 80 >= 0.2
    assert bad.metrics["train_tokens"] == step * 4 * 128  # only the steps it really trained
    assert "worse than the early-stopping threshold" in bad.message

    good = synthetic_trial(2e-3, stop)
    assert good.status is TrialStatus.COMPLETE and good.metrics["steps"] == 80


def test_a_diverging_loss_is_pruned_with_its_step_when_early_stopping_is_on():
    config = {"learning_rate": 0.5, "max_grad_norm": 10.0}
    fitness = SyntheticFitness()
    plain = fitness.evaluate(Trial(0, config, Budget(steps=80), 1))
    assert plain.status is TrialStatus.FAILED and plain.reason.value == "diverged"
    stopped = fitness.evaluate(Trial(0, config, Budget(steps=80), 1, early_stop=EarlyStop(loss_ratio=3.0)))
    assert stopped.status is TrialStatus.PRUNED and stopped.reason.value == "diverged"
    assert stopped.metrics["pruned_at_step"] == 16


def test_early_stopping_in_a_run_prunes_without_aborting_and_never_picks_a_pruned_best(synthetic_config, tmp_path):
    synthetic_config["budget"] = {"steps": 80}
    synthetic_config["evolution"].update(
        population_size=6, generations=3, max_consecutive_failures=2, early_stopping={"rule": "median", "min_trials": 3}
    )
    result = run(synthetic_config, tmp_path / "run")
    with RunStore.open(tmp_path / "run") as store:
        trials = store.trials()
        pruned = [t for t in trials if t.status is TrialStatus.PRUNED]
        assert pruned, "the rule never fired"
        assert all(t.metrics["steps"] < 80 and "pruned_at_step" in t.metrics for t in pruned)
        assert all(t.status is TrialStatus.COMPLETE for t in result.best_trials)
        assert sum(s["pruned"] for s in store.generation_stats()) == len(pruned)


def test_halving_is_the_default_in_steady_state_where_curves_are_reported(synthetic_config, tmp_path):
    """auto: halving with Hyperband's brackets in steady state, on a fitness that validates during
    training; nothing where it cannot judge a curve, nor in the modes that keep their own promises."""
    settings = parse_config(synthetic_config).evolution
    assert settings.early_stopping == "auto" and settings.stopping(True) == EarlyStopping()
    assert EarlyStopping().rule.value == "halving" and EarlyStopping().brackets == 3
    assert settings.stopping(False) is None
    for mode in ("generational", "pbt"):
        assert parse_config({**synthetic_config, "evolution": {"mode": mode}}).evolution.stopping(True) is None
    assert parse_config({**synthetic_config, "evolution": {"multi_fidelity": True}}).evolution.stopping(True) is None
    off = parse_config({**synthetic_config, "evolution": {"early_stopping": None}}).evolution
    assert off.early_stopping is None and off.stopping(True) is None
    with pytest.raises(
        ConfigError, match=r"^evolution.early_stopping: expected auto, a mapping, true or null, got 'on'$"
    ):
        parse_config({**synthetic_config, "evolution": {"early_stopping": "on"}})

    synthetic_config["budget"] = {"steps": 90}
    synthetic_config["evolution"].update(population_size=6, generations=4)
    result = run(synthetic_config, tmp_path / "run")
    with RunStore.open(tmp_path / "run") as store:
        searched = [t for t in store.trials() if t.generation >= 0]
    pruned = [t for t in searched if t.status is TrialStatus.PRUNED and t.reason is None]
    assert pruned and all(t.metrics["steps"] < 90 for t in pruned)
    assert all("early-stopping threshold" in t.message for t in pruned)
    assert all(t.status is TrialStatus.COMPLETE for t in result.best_trials)


def test_early_stopping_on_a_fitness_without_intermediate_values_warns(synthetic_config):
    from evo.run._preflight import check_run

    synthetic_config["evolution"]["early_stopping"] = True
    config = parse_config(synthetic_config)
    assert check_run(config, SyntheticFitness()) == []

    class EndOnly(SyntheticFitness):
        intermediate_values = False

    (warning,) = check_run(config, EndOnly())
    assert warning.startswith("evolution.early_stopping:") and "only at the end" in warning
    assert check_run(parse_config({**synthetic_config, "evolution": {}}), EndOnly()) == []  # auto: silent


def test_plots_and_report_of_a_multi_fidelity_run_count_whole_budget_trials_only(synthetic_config, tmp_path):
    from evo.reporting import write_report
    from evo.reporting.plots import plot_run

    run(mf_config(synthetic_config), tmp_path / "run")
    series = plot_run(tmp_path / "run").series["best_vs_compute"]
    with RunStore.open(tmp_path / "run") as store:
        trials = {t.id: t for t in store.trials()}
    full_best = min(t.values["val_perplexity"] for t in trials.values() if t.full and t.ok and t.generation >= 0)
    assert min(v for v in series["best_so_far"] if v is not None) == full_best
    assert series["compute"][-1] == sum(t.metrics["train_tokens"] for t in trials.values() if t.generation >= 0)
    assert write_report(tmp_path / "run").is_file()
