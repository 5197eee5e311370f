import math

import pytest

from evo import EvolutionSettings, evolve
from evo.config import parse_config
from evo.evaluation import RunAborted
from evo.run import start_run
from evo.space import SearchSpace
from evo.storage import RunStore
from evo.trial import Budget, FailureReason, TrialStatus
from fitness.synthetic import SyntheticFitness
from tests.conftest import SMALL_SPACE
from tests.evo.fitnesses import AlwaysRaises, NonFiniteForBoolTrue, Sphere, TwoObjectives

BUDGET = Budget(steps=10)  # a run needs one; these fitnesses ignore it


def run_synthetic(config, run_dir):
    cfg = parse_config(config)
    return start_run(cfg, SyntheticFitness.from_spec(cfg.fitness), run_dir)


def table(run_dir):
    with RunStore.open(run_dir) as store:
        return [(t.config, t.values, t.status, t.seed) for t in store.trials()]


def test_same_seed_same_run_other_seed_other_run(synthetic_config, tmp_path):
    run_synthetic(synthetic_config, tmp_path / "a")
    run_synthetic(synthetic_config, tmp_path / "b")
    synthetic_config["seed"] = 4
    run_synthetic(synthetic_config, tmp_path / "c")
    assert table(tmp_path / "a") == table(tmp_path / "b")
    assert table(tmp_path / "a") != table(tmp_path / "c")


@pytest.mark.parametrize("strategy", ["mu_plus_lambda", "mu_comma_lambda"])
def test_best_improves_and_elite_survives(synthetic_config, tmp_path, strategy):
    synthetic_config["evolution"].update(strategy=strategy, generations=6, offspring_size=8, elitism=1)
    result = run_synthetic(synthetic_config, tmp_path / "run")
    bests = [row["best"] for row in result.history]
    assert all(b2 <= b1 for b1, b2 in zip(bests, bests[1:])), bests
    assert bests[-1] < bests[0]
    assert len(result.history) == 7
    assert set(result.history.header) >= {"best", "median", "mean", "worst", "std", "diversity"}
    with RunStore.open(tmp_path / "run") as store:
        assert len(store.population(6)) == 6
        assert len(store.individuals(1)) == 8


def test_every_evaluation_is_stored_with_genealogy(synthetic_config, tmp_path):
    run_synthetic(synthetic_config, tmp_path / "run")
    with RunStore.open(tmp_path / "run") as store:
        inds = store.individuals()
        ids = {i.id for i in inds}
        assert all(i.trial_id is not None for i in inds)
        assert all(set(i.parents) <= ids for i in inds)
        assert any(i.origin.startswith("crossover") for i in inds) and any(i.origin == "mutation" for i in inds)
        for t in store.trials():
            assert t.status in (TrialStatus.COMPLETE, TrialStatus.FAILED, TrialStatus.PRUNED)  # early stopping: auto
            assert t.finished_at >= t.started_at and t.seed >= 0
            assert t.config["max_seq_length"] == 128  # fixed values sit beside the genes
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_identical_genomes_are_never_trained_twice(tmp_path):
    tiny = {
        "use_rslora": {"type": "bool"},
        "r": {"type": "int", "choices": [4, 8, 16]},
        "target_modules": {"type": "categorical", "choices": ["attention", "all-linear"]},
    }
    space = SearchSpace.from_spec(tiny)
    fitness = Sphere(space)
    result = evolve(
        space, fitness, budget=BUDGET, evolution={"population_size": 4, "generations": 8}, run_dir=tmp_path / "r"
    )
    keys = [tuple(sorted(map(str, c.items()))) for c in fitness.calls]
    assert len(keys) == len(set(keys)) <= 12
    assert result.cache_hits > 0
    assert result.evaluations == len(fitness.calls)


def test_a_raising_fitness_stops_after_n_consecutive_failures(tmp_path):
    space = SearchSpace.from_spec(SMALL_SPACE)
    fitness = AlwaysRaises(space)
    with pytest.raises(RunAborted, match="4 evaluations in a row failed.*device-side assert"):
        evolve(
            space,
            fitness,
            budget=BUDGET,
            evolution={"population_size": 6, "max_consecutive_failures": 4},
            run_dir=tmp_path / "r",
        )
    with RunStore.open(tmp_path / "r") as store:
        trials = store.trials()
    assert len(trials) == 4
    assert all(t.reason is FailureReason.EXCEPTION and "device-side assert" in t.message for t in trials)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None])
def test_non_finite_objective_is_a_failure_never_a_fitness(tmp_path, bad):
    space = SearchSpace.from_spec(SMALL_SPACE)
    fitness = NonFiniteForBoolTrue(space, bad)
    result = evolve(
        space, fitness, budget=BUDGET, evolution={"population_size": 8, "generations": 3}, run_dir=tmp_path / "r"
    )
    with RunStore.open(tmp_path / "r") as store:
        failed = [t for t in store.trials() if not t.ok]
    assert failed and all(t.config["use_rslora"] for t in failed)
    expected = FailureReason.EXCEPTION if bad is None else FailureReason.DIVERGED
    assert all(t.reason is expected for t in failed)
    assert all(not c["use_rslora"] for c in result.best)
    assert all(math.isfinite(row["best"]) for row in result.history)


def test_two_objectives_give_a_pareto_front(tmp_path):
    space = SearchSpace.from_spec(SMALL_SPACE)
    result = evolve(space, TwoObjectives(space), budget=BUDGET, evolution={"population_size": 8, "generations": 3})
    values = [(t.values["loss"], t.values["memory"]) for t in result.best_trials]
    assert len(values) >= 2
    for a in values:  # nobody on the front is dominated by anybody else on it
        assert not any(b[0] <= a[0] and b[1] <= a[1] and b != a for b in values)


def test_python_api_with_own_space_and_fitness():
    space = SearchSpace.from_spec(
        {"x": {"type": "float", "low": 0.0, "high": 1.0}, "y": {"type": "int", "low": 0, "high": 10}}
    )
    fitness = Sphere(space)
    result = evolve(
        space, fitness, budget=BUDGET, evolution=EvolutionSettings(population_size=10, generations=10), seed=1
    )
    assert result.run_dir is None
    assert result.best_trials[0].values["loss"] < 0.01
    assert result.best[0]["y"] == 3


def test_immigrants_are_random_newcomers(synthetic_config, tmp_path):
    synthetic_config["evolution"].update(immigrants=2)
    run_synthetic(synthetic_config, tmp_path / "r")
    with RunStore.open(tmp_path / "r") as store:
        for gen in range(1, 5):
            assert [i.origin for i in store.individuals(gen)].count("immigrant") == 2


def test_failures_from_the_synthetic_fitness_are_recorded_and_the_run_goes_on(synthetic_config, tmp_path):
    synthetic_config["fitness"]["failure_rate"] = 0.3
    result = run_synthetic(synthetic_config, tmp_path / "r")
    with RunStore.open(tmp_path / "r") as store:
        failed = [t for t in store.trials() if t.reason is FailureReason.EXCEPTION]
    assert failed and all("synthetic failure" in t.message for t in failed)
    assert sum(row["failed"] for row in result.history) >= len(failed)
    assert result.best_trials[0].ok


def test_baseline_is_evaluated_once_and_kept_apart(synthetic_config, tmp_path):
    synthetic_config["baseline"] = {"learning_rate": 2e-4, "r": 64, "lora_alpha": 16, "lora_dropout": 0.1}
    result = run_synthetic(synthetic_config, tmp_path / "r")
    with RunStore.open(tmp_path / "r") as store:
        baseline = [t for t in store.trials() if t.generation == -1]
        assert len(baseline) == 1 and baseline[0].config["learning_rate"] == 2e-4
        in_population = {i.trial_id for g in store.finished_generations() for i in store.population(g)}
    assert baseline[0].id not in in_population
    assert baseline[0].id not in {t.id for t in result.best_trials}
