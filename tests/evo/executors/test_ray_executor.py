"""The Ray executor on a real local cluster (2 CPUs): same results as local, actors
killed with SIGKILL mid-trial are replaced, a trial that always kills its actor fails."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from evo import evolve
from evo.config import parse_config
from evo.run import start_run
from evo.space import SearchSpace
from evo.storage import RunStore
from evo.trial import Budget, FailureReason
from fitness.synthetic import SyntheticFitness
from tests.conftest import SMALL_SPACE
from tests.evo.fitnesses import KillsItsWorker, Sleepy

BUDGET = Budget(steps=10)  # a run needs one; these fitnesses ignore it

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[3]
RAY = {"type": "ray", "workers": 2, "cpus_per_trial": 0.5, "max_retries": 2}


@pytest.fixture(scope="module")
def ray_cluster():
    # Workers import the test fitnesses by name, so they need the repository on their path.
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="WARNING",
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    yield
    ray.shutdown()


def final_population(run_dir):
    with RunStore.open(run_dir) as store:
        last = store.finished_generations()[-1]
        population = [(i.genome, store.trial(i.trial_id).values) for i in store.population(last)]
        trials = sorted((str(sorted(t.config.items())), t.seed, t.status.value, str(t.values)) for t in store.trials())
        return last, population, trials


def test_generational_run_on_ray_matches_the_local_run(ray_cluster, synthetic_config, tmp_path):
    # heterogeneous durations: trials finish out of order on three actors
    synthetic_config["fitness"].update(seconds_per_trial=0.02, duration_spread=1.0)
    synthetic_config["evolution"]["mode"] = "generational"  # the mode that gives one run on any number of workers
    for name, executor in (("local", {"type": "local"}), ("ray", {**RAY, "workers": 3, "cpus_per_trial": 0.5})):
        config = parse_config({**synthetic_config, "executor": executor})
        start_run(config, SyntheticFitness.from_spec(config.fitness), tmp_path / name)
    assert final_population(tmp_path / "ray") == final_population(tmp_path / "local")


def test_an_actor_killed_mid_trial_is_replaced_and_the_trial_retried(ray_cluster, tmp_path):
    space = SearchSpace.from_spec(SMALL_SPACE)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    killed = []

    def kill_the_first_trial():
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            for path in pid_dir.glob("*.pid"):
                trial_id, pid = map(int, path.name.split(".")[:2])
                os.kill(pid, signal.SIGKILL)
                killed.append(trial_id)
                break
            time.sleep(0.01)

    killer = threading.Thread(target=kill_the_first_trial, daemon=True)
    killer.start()
    evolve(
        space,
        Sleepy(space, pid_dir, seconds=0.5),
        budget=BUDGET,
        evolution={"population_size": 4, "generations": 1},
        run_dir=tmp_path / "run",
        executor=RAY,
    )
    killer.join(5)
    with RunStore.open(tmp_path / "run") as store:
        trials, individuals = store.trials(), store.individuals()
    (victim,) = [t for t in trials if t.id == killed[0]]
    assert victim.ok and victim.metrics["retries"] == 1
    assert len({p.name.split(".")[1] for p in pid_dir.glob(f"{victim.id}.*.pid")}) == 2  # another process re-ran it
    assert all(t.ok for t in trials) and not any("retries" in t.metrics for t in trials if t.id != victim.id)
    assert sorted(i.trial_id for i in individuals) == sorted(t.id for t in trials)  # each counted once


def test_a_trial_that_always_kills_its_actor_fails_as_killed_and_the_run_goes_on(ray_cluster, tmp_path):
    space = SearchSpace.from_spec(SMALL_SPACE)
    deadly = {**space.sample(np.random.default_rng(0)), "lora_dropout": 0.1234}
    result = evolve(
        space,
        KillsItsWorker(space, 0.1234),
        budget=BUDGET,
        evolution={"population_size": 4, "generations": 2},
        run_dir=tmp_path / "run",
        warm_start=[deadly],
        executor={**RAY, "max_retries": 1},
    )
    with RunStore.open(tmp_path / "run") as store:
        trials = store.trials()
        assert store.finished_generations() == [0, 1, 2]
    dead = [t for t in trials if t.config["lora_dropout"] == 0.1234]
    assert dead and all(t.reason is FailureReason.KILLED for t in dead)
    assert "died 2 times" in dead[0].message
    assert all(t.ok for t in trials if t not in dead) and result.best_trials[0].ok


def test_asking_for_ray_without_ray_installed_is_a_one_line_config_error(synthetic_config, write_config, tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None; from evo.cli import main; "
        f"sys.exit(main(['run', {str(write_config(synthetic_config))!r}, '--out', {str(tmp_path / 'r')!r},"
        " '--executor', 'ray', '--quiet', '--no-plots']))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == "evo: error: executor.type: ray is not installed; pip install 'evo-qlora[ray]'"
