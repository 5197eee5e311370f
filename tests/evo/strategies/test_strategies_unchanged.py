"""Every strategy produces the same trials and the same best as before the engine rebuild.

``data/strategy_golden.json`` was written by the pre-rebuild engine (``python -m
tests.evo.strategies.test_strategies_unchanged`` regenerates it): for each scenario, every trial in
the order it was stored as ``[config, status, value]``, and the best config. A change
that alters what a seed does shows up here as the first trial that differs.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parents[1] / "data" / "strategy_golden.json"


# The golden runs date from before the engine's default mode moved to steady state, the
# surrogate's gamma to 0.1 and early stopping to auto: the scenarios name the settings they
# were recorded with, so they keep testing the strategies.
RECORDED_WITH = {"init": "random", "mode": "generational", "surrogate_gamma": 0.2, "early_stopping": None}


def _synthetic_yaml(**evolution):
    config = yaml.safe_load((ROOT / "experiments" / "synthetic.yaml").read_text())
    config["evolution"].update({**RECORDED_WITH, **evolution})
    return config


def _small(**evolution):
    from tests.conftest import SMALL_SPACE

    return {
        "seed": 3,
        "fitness": {"type": "synthetic"},
        "budget": {"steps": 90},
        "evolution": {"population_size": 6, "generations": 4, **RECORDED_WITH, **evolution},
        "search_space": copy.deepcopy(SMALL_SPACE),
        "fixed": {"max_seq_length": 128},
    }


SCENARIOS = {
    "generational_tpe": lambda: _synthetic_yaml(generations=5),
    "generational_no_surrogate": lambda: _synthetic_yaml(generations=5, surrogate="none"),
    "mu_comma_lambda": lambda: _small(strategy="mu_comma_lambda", offspring_size=8, elitism=2),
    "multi_fidelity": lambda: _small(
        population_size=4, offspring_size=9, generations=2, multi_fidelity={"eta": 3, "min_fidelity": 1 / 9}
    ),
    "early_stopping": lambda: _small(early_stopping={"rule": "median", "min_trials": 4, "warmup": 0.2}),
    "halving": lambda: _small(mode="steady_state", immigrants=1, early_stopping="auto"),
    "pbt": lambda: {
        **_small(population_size=8, mode="pbt", pbt={"interval": 0.25, "quantile": 0.25}),
        "budget": {"steps": 80},
    },
    "steady_state": lambda: _small(mode="steady_state", immigrants=1),
    "two_objectives": lambda: {
        **_small(generations=3),
        "fitness": {"type": "synthetic", "objectives": ["val_perplexity", "trainable_parameters"]},
    },
}


def run_scenario(name: str, run_dir: Path) -> dict:
    from evo import RunStore, parse_config, start_run
    from fitness import make_fitness

    config = parse_config(SCENARIOS[name]())
    fitness = make_fitness(config.fitness)
    result = start_run(config, fitness, run_dir)
    with RunStore.open(run_dir) as store:
        trials = [
            [t.config, t.status.value, t.values.get(fitness.objectives[0].name)]
            for t in store.trials()
            if t.generation >= -1
        ]
    return {"trials": trials, "best": [dict(b) for b in result.best]}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_strategy_gives_the_same_trials_and_best_as_before(name, tmp_path):
    expected = json.loads(GOLDEN.read_text())[name]
    got = json.loads(json.dumps(run_scenario(name, tmp_path / "run")))
    for i, (want, have) in enumerate(zip(expected["trials"], got["trials"])):
        assert have == want, f"{name}: trial {i} differs"
    assert len(got["trials"]) == len(expected["trials"])
    assert got["best"] == expected["best"]


if __name__ == "__main__":  # regenerate: only when a change of results is intended
    import tempfile

    out = {}
    for name in sorted(SCENARIOS):
        with tempfile.TemporaryDirectory() as tmp:
            out[name] = run_scenario(name, Path(tmp) / "run")
            print(name, len(out[name]["trials"]), file=sys.stderr)
    GOLDEN.write_text(json.dumps(out, indent=0, sort_keys=True))
