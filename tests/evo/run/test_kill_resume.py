"""A run killed at any point and resumed equals the uninterrupted run, trial by trial.

Each strategy runs once uninterrupted, then again with SIGKILLs at kill points drawn
from a seeded generator (see ``tests/evo/killpoints.py``: inside breeding, inside a
store write, inside a trial, between the last evaluation and the generation record),
resumed after each kill until it finishes. Both runs must hold the same individuals
(generation, slot, genome, origin, parents), the same trials apart from the killed
rows, the same populations, statistics and best. The default suite kills a few times
per strategy; ``-m slow`` kills at least 20 times per strategy. A generational run on two
devices (``executor.devices``) is among them: its trials end in any order, in two threads.
"""

from __future__ import annotations

import copy
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from evo.storage import RunStore
from tests.conftest import SMALL_SPACE

ROOT = Path(__file__).resolve().parents[3]


def _config(**evolution) -> dict:
    return {
        "seed": 11,
        "fitness": {"type": "synthetic", "failure_rate": 0.05},
        "budget": {"steps": 90},
        "evolution": {"population_size": 6, "generations": 5, "immigrants": 1, "mode": "generational", **evolution},
        "search_space": copy.deepcopy(SMALL_SPACE),
        "fixed": {"max_seq_length": 128},
        "baseline": {"learning_rate": 2e-4, "r": 16},
    }


STRATEGIES = {
    "generational": _config(),
    "generational-no-surrogate": _config(surrogate="none", init="sobol"),
    "steady-state": _config(mode="steady_state", prior_share=0.5),  # the default mode, started around the baseline
    "multi-fidelity": _config(offspring_size=9, multi_fidelity={"eta": 3, "min_fidelity": 1 / 9}),
    "pbt": _config(mode="pbt", population_size=8, immigrants=0, pbt={"interval": 0.2}),
    "steady-state-trials-budget": {**_config(mode="steady_state"), "run_budget": {"trials": 23}},
    "generational-tokens-budget": {**_config(), "run_budget": {"train_tokens": 600_000}},  # ends inside a generation
    "ray": {**_config(generations=3), "executor": {"type": "ray", "workers": 2, "cpus_per_trial": 0.25}},
    "generational-two-devices": {  # trials finishing out of order on two device threads; selection in slot order
        **_config(),
        "fitness": {"type": "synthetic", "failure_rate": 0.05, "seconds_per_trial": 0.004, "duration_spread": 1.0},
        "executor": {"devices": ["a", "b"]},
    },
}


def _driver(run_dir: Path, kill_at: int, config: Path) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "tests.evo.killpoints", str(run_dir), str(kill_at), str(config)]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _snapshot(run_dir: Path) -> dict:
    """What a run decided, independent of trial row ids (killed rows take ids too)."""
    with RunStore.open(run_dir) as store:
        trials = {t.id: t for t in store.trials()}
        alive = [t for t in trials.values() if t.reason is None or t.reason.value != "killed"]

        def trial_key(trial_id):
            t = trials[trial_id]
            return [t.generation, t.config, t.fidelity, t.status.value, t.values, t.seed]

        return {
            "individuals": [
                [
                    i.id,
                    i.generation,
                    i.slot,
                    i.genome,
                    i.origin,
                    i.parents,
                    trial_key(i.trial_id) if i.trial_id else None,
                ]
                for i in store.individuals()
            ],
            "trials": sorted(
                json.dumps([*trial_key(t.id), trial_key(t.resumed_from) if t.resumed_from else None], sort_keys=True)
                for t in alive
            ),
            "populations": {g: [i.id for i in store.population(g)] for g in store.finished_generations()},
            "stats": store.generation_stats(),
            "pbt_schedule": [{**step, "trial": trial_key(step["trial"])} for step in store.meta("pbt_schedule", [])],
            "pareto_front": [trial_key(i) for i in store.meta("pareto_front", [])],
        }


def _kill_and_resume(name: str, tmp_path: Path, kills: int) -> tuple[int, list[int]]:
    config = tmp_path / f"{name}.json"
    config.write_text(json.dumps(STRATEGIES[name]))
    whole = _driver(tmp_path / "whole", 0, config)
    assert whole.returncode == 0, whole.stderr[-2000:]
    points = json.loads(whole.stdout.splitlines()[-1])["kill_points"]
    rng = random.Random(f"{name}-{kills}")
    run_dir, done, killed_at = tmp_path / "killed", False, []
    while not done:
        kill_at = rng.randint(1, max(1, points // (kills + 1))) if len(killed_at) < kills else 0
        proc = _driver(run_dir, kill_at, config)
        if proc.returncode == -9:
            killed_at.append(kill_at)
            continue
        assert proc.returncode == 0, proc.stderr[-2000:]
        done = True
    assert _snapshot(run_dir) == _snapshot(tmp_path / "whole")
    return points, killed_at


@pytest.mark.parametrize("name", [n for n in STRATEGIES if n != "ray"])
def test_a_run_killed_a_few_times_ends_as_the_uninterrupted_one(name, tmp_path):
    points, killed_at = _kill_and_resume(name, tmp_path, kills=3)
    assert len(killed_at) == 3


@pytest.mark.slow  # tens of seconds: run with -m slow
def test_a_ray_run_killed_once_ends_as_the_uninterrupted_one(tmp_path):
    pytest.importorskip("ray")
    points, killed_at = _kill_and_resume("ray", tmp_path, kills=1)
    assert len(killed_at) == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_a_run_killed_twenty_times_ends_as_the_uninterrupted_one(name, tmp_path):
    if name == "ray":
        pytest.importorskip("ray")
    points, killed_at = _kill_and_resume(name, tmp_path, kills=20)
    assert len(killed_at) >= 20
