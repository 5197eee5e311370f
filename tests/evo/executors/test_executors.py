"""The local executor and the executor settings: threads give the sequential run."""

import pytest

from evo import evolve
from evo.config import parse_config
from evo.run import start_run
from evo.space import SearchSpace
from evo.storage import RunStore
from evo.trial import Budget, ConfigError
from fitness.synthetic import SyntheticFitness
from tests.evo.fitnesses import Sphere

BUDGET = Budget(steps=10)  # a run needs one; these fitnesses ignore it


def trials_of(run_dir):
    with RunStore.open(run_dir) as store:
        last = store.finished_generations()[-1]
        population = [(i.genome, store.trial(i.trial_id).values) for i in store.population(last)]
        return population, sorted((str(sorted(t.config.items())), t.seed, str(t.values)) for t in store.trials())


def test_generational_run_on_threads_is_the_sequential_run(synthetic_config, tmp_path):
    synthetic_config["fitness"].update(seconds_per_trial=0.01, duration_spread=1.0)  # out-of-order finishes
    synthetic_config["evolution"]["mode"] = "generational"
    for workers in (1, 4):
        config = parse_config({**synthetic_config, "executor": {"workers": workers}})
        start_run(config, SyntheticFitness.from_spec(config.fitness), tmp_path / str(workers))
    assert trials_of(tmp_path / "4") == trials_of(tmp_path / "1")


def test_identical_genomes_in_flight_together_are_trained_once(tmp_path):
    space = SearchSpace.from_spec({"x": {"type": "float", "low": 0.0, "high": 1.0}})
    fitness = Sphere(space)
    twin = {"x": 0.25}
    result = evolve(
        space,
        fitness,
        budget=BUDGET,
        evolution={"population_size": 3, "generations": 0},
        warm_start=[twin, twin],
        executor={"workers": 3},
    )
    assert [c["x"] for c in fitness.calls].count(0.25) == 1
    assert result.cache_hits == 1 and result.evaluations == 2


@pytest.mark.parametrize(
    "executor, message",
    [
        ({"type": "slurm"}, "executor.type: unknown value 'slurm'"),
        ({"workers": 0}, "executor.workers: must be a whole number >= 1"),
        ({"type": "ray", "cpus_per_trial": 0}, "executor.cpus_per_trial: must be a number > 0"),
        ({"type": "ray", "max_retries": -1}, "executor.max_retries"),
        ({"address": "auto"}, "executor.address: only the ray executor"),
        ({"gpu": 1}, "executor.gpu: unknown key"),
    ],
)
def test_bad_executor_settings_are_config_errors(synthetic_config, executor, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({**synthetic_config, "executor": executor})


def test_an_unreachable_cluster_address_is_refused_within_the_stated_time(monkeypatch):
    """One TCP connect bounded by REACH_SECONDS, not Ray's half a minute of retries."""
    import socket

    from evo import executors
    from tests.fitness.qlora.hubserver import closed_port

    with pytest.raises(ConfigError, match=r"executor.address '127.0.0.1:\d+': cannot reach it within 5 s \("):
        executors.check_reachable(f"127.0.0.1:{closed_port()}")
    asked = []

    def silent(address, timeout):  # a host that never answers: the connect times out
        asked.append((address, timeout))
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", silent)
    with pytest.raises(ConfigError, match=r"within 5 s \(no answer\); start the cluster"):
        executors.check_reachable("ray://head.example:10001")
    assert asked == [(("head.example", 10001), executors.REACH_SECONDS)] and executors.REACH_SECONDS == 5.0
    for address in (None, "auto", "local"):  # found or started on this machine: nothing to probe
        executors.check_reachable(address)
    with pytest.raises(ConfigError, match="expected host:port"):
        executors.check_reachable("head-without-port")
