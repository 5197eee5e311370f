"""The config as a leaf: what it derives at parse time, and what importing it costs."""

import subprocess
import sys

import pytest

from evo import Budget, evolve
from evo.config import EvolutionSettings, Mode, MultiFidelity, parse_config, resolved
from evo.space import SearchSpace
from evo.trial import ConfigError
from fitness.synthetic import SyntheticFitness
from tests.conftest import ROOT, SMALL_SPACE
from tests.evo.fitnesses import Sphere


def with_evolution(config, **evolution):
    return parse_config({**config, "evolution": evolution}).evolution


def test_multi_fidelity_is_a_mode_decided_by_the_parser(synthetic_config):
    block = with_evolution(synthetic_config, multi_fidelity={"eta": 2})
    assert block.mode is Mode.MULTI_FIDELITY and block.multi_fidelity == MultiFidelity(eta=2)
    named = with_evolution(synthetic_config, mode="multi_fidelity")
    assert named.mode is Mode.MULTI_FIDELITY and named.multi_fidelity == MultiFidelity()
    assert with_evolution(synthetic_config, multi_fidelity=None).mode is Mode.STEADY_STATE
    assert with_evolution(synthetic_config).multi_fidelity is None


def test_a_config_without_a_mode_runs_the_one_its_settings_need(synthetic_config):
    assert with_evolution(synthetic_config).mode is Mode.STEADY_STATE  # the default
    assert with_evolution(synthetic_config, strategy="mu_comma_lambda", offspring_size=8).mode is Mode.GENERATIONAL
    assert with_evolution(synthetic_config, mode="generational").mode is Mode.GENERATIONAL
    with pytest.raises(ConfigError, match="evolution.strategy"):  # asked for both: refused, not guessed
        with_evolution(synthetic_config, mode="steady_state", strategy="mu_comma_lambda", offspring_size=8)


def test_pbt_derives_its_generations_without_patching_the_settings(synthetic_config):
    pbt = with_evolution(synthetic_config, mode="pbt", generations=7, pbt={"interval": 0.25})
    assert pbt.generations == 7 and pbt.planned_generations == 3  # four intervals
    assert with_evolution(synthetic_config, generations=7).planned_generations == 7


def test_the_resolved_config_parses_to_the_same_settings(synthetic_config):
    for evolution in ({}, {"mode": "pbt"}, {"multi_fidelity": True}, {"mode": "steady_state", "immigrants": 1}):
        config = parse_config({**synthetic_config, "evolution": evolution})
        again = parse_config(config.raw)
        assert again.evolution.planned_generations == config.evolution.planned_generations
        assert again.evolution.mode is config.evolution.mode and again.raw == resolved(again, config.raw)


def test_settings_built_in_python_obey_the_same_rules():
    with pytest.raises(
        ConfigError, match=r"^evolution.population_size: must be a whole number in \[2, 100000\], got 1$"
    ):
        EvolutionSettings(population_size=1)
    with pytest.raises(ConfigError, match=r"^evolution.surrogate: expected one of none, tpe, got"):
        EvolutionSettings(surrogate="tpe")
    with pytest.raises(ConfigError, match=r"^evolution.mode: generational needs evolution.multi_fidelity left out"):
        EvolutionSettings(mode=Mode.GENERATIONAL, multi_fidelity=MultiFidelity())
    with pytest.raises(
        ConfigError, match=r"^evolution.multi_fidelity: works with mode: generational, not steady_state"
    ):
        EvolutionSettings(multi_fidelity=MultiFidelity())  # in Python the mode is not guessed
    settings = EvolutionSettings(
        population_size=4, generations=1, mode=Mode.MULTI_FIDELITY, multi_fidelity=MultiFidelity()
    )
    result = evolve(
        SMALL_SPACE, SyntheticFitness(), budget=Budget(steps=90), evolution=settings, fixed={"max_seq_length": 128}
    )
    assert result.evaluations > 0


def test_the_python_api_needs_a_budget():
    space = SearchSpace.from_spec({"x": SMALL_SPACE["lora_dropout"]})
    with pytest.raises(TypeError, match="budget"):
        evolve(space, Sphere(space))
    with pytest.raises(ConfigError, match=r"^budget: set steps or tokens"):
        evolve(space, Sphere(space), budget=Budget())


def test_importing_the_config_loads_nothing_that_runs():
    code = (
        "import sys; from evo.config import RunConfig, load_config, parse_config, EvolutionSettings, ExecutorSettings; "
        "import evo.config._evolution, evo.config._executor; "
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert "evo.config._run" in loaded
    heavy = {
        "evo.reporting._trackers",
        "evo.store",
        "evo.storage",
        "deap",
        "evo.evaluation._observers",
        "evo.evaluation._evaluator",
        "evo.run._api",
        "torch",
    }
    assert not heavy & loaded
    assert not [
        m
        for m in loaded
        if m.startswith(("deap.", "evo.storage.", "evo.strategies._", "ray")) and m != "evo.config._evolution"
    ]
