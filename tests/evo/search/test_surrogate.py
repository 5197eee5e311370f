"""Surrogate-assisted variation: the density ratio, the screening, and runs that use it."""

import os
import random
import signal

import numpy as np
import pytest

from evo import evolve
from evo.config import EvolutionSettings, Surrogate
from evo.search._surrogate import GAMMA, MIN_OBSERVATIONS, DensityRatio, Observation, screen, split
from evo.space import SearchSpace
from evo.storage import RunStore
from evo.trial import Budget, ConfigError
from tests.conftest import SMALL_SPACE
from tests.evo.fitnesses import Sphere
from tests.evo.run.test_resume import evo as evo_cli
from tests.evo.run.test_resume import final_state, finished_trials, wait_for

BUDGET = Budget(steps=10)  # a run needs one; these fitnesses ignore it

SPACE = SearchSpace.from_spec(SMALL_SPACE)


def at(u: float, flag: bool = False, modules: str = "attention") -> dict:
    """A genome with every ordered gene at unit value ``u``."""
    genome = {g.name: g.from_unit(u) for g in SPACE if not g.nominal}
    return {**genome, "use_rslora": flag, "target_modules": modules}


def sphere_observations(n: int, rng: np.random.Generator) -> list[Observation]:
    """Random genomes scored by closeness of their ordered genes to 0.2 (larger is better)."""
    out = []
    for _ in range(n):
        genome = SPACE.sample(rng)
        loss = sum((g.to_unit(genome[g.name]) - 0.2) ** 2 for g in SPACE if not g.nominal)
        out.append(Observation(genome, (-loss,)))
    return out


def test_density_ratio_prefers_the_region_of_the_good_trials():
    observations = sphere_observations(60, np.random.default_rng(0))
    scores = DensityRatio(SPACE, observations).score([at(0.2), at(0.5), at(0.9)])
    assert scores[0] > scores[1] > scores[2]


def test_a_failed_trial_counts_against_its_region():
    good = [Observation(at(u), (-abs(u - 0.5),)) for u in (0.3, 0.4, 0.5, 0.6, 0.7)]
    failed = [Observation(at(0.9, flag=True), None), Observation(at(0.95, flag=True), None)]
    ratio = DensityRatio(SPACE, good + failed)
    near_failures, elsewhere = ratio.score([at(0.92, flag=True), at(0.5)])
    assert near_failures < elsewhere


def test_nominal_genes_are_modelled_by_their_choices():
    observations = [
        Observation(at(0.5, modules=m), (1.0 if m == "all-linear" else 0.0,)) for m in ["all-linear", "attention"] * 10
    ]
    a, b = DensityRatio(SPACE, observations).score([at(0.5, modules="all-linear"), at(0.5, modules="attention")])
    assert a > b


def test_scores_do_not_depend_on_the_order_trials_finished_in():
    observations = sphere_observations(30, np.random.default_rng(1))
    candidates = [SPACE.sample(np.random.default_rng(2)) for _ in range(20)]
    shuffled = list(observations)
    random.Random(3).shuffle(shuffled)
    assert np.array_equal(
        DensityRatio(SPACE, observations).score(candidates), DensityRatio(SPACE, shuffled).score(candidates)
    )


def test_several_objectives_rank_by_domination():
    # (loss, memory) both maximised after signing: the front is at u = 0.2 and 0.8, dominated points between
    observations = [
        Observation(at(u), s)
        for u, s in [
            (0.2, (0.0, -1.0)),
            (0.8, (-1.0, 0.0)),
            (0.5, (-2.0, -2.0)),
            (0.55, (-2.0, -3.0)),
            (0.45, (-3.0, -2.0)),
            (0.5, (-3.0, -3.0)),
        ]
    ]
    front, dominated = DensityRatio(SPACE, observations, gamma=0.34).score([at(0.2), at(0.5)])
    assert front > dominated


def test_screen_keeps_breeding_order_until_there_is_data():
    candidates = [SPACE.sample(np.random.default_rng(100 + i)) for i in range(10)]
    few = sphere_observations(MIN_OBSERVATIONS - 1, np.random.default_rng(0))
    assert screen(SPACE, candidates, few, 3) == [0, 1, 2]
    assert screen(SPACE, candidates, [Observation(c, None) for c in candidates], 3) == [0, 1, 2]
    many = sphere_observations(40, np.random.default_rng(0))
    best_seen = max(many, key=lambda o: o.score).genome
    near_the_best = dict(best_seen, lora_dropout=round(best_seen["lora_dropout"] + 0.01, 3))
    best = screen(SPACE, candidates + [near_the_best], many, 3)
    assert len(best) == 3 and best[0] == 10


def test_gamma_sets_how_many_observations_the_good_density_holds():
    """With gamma 0.1 only the best 4 of 40 form the good density; with 0.5 the best 20 blur it."""
    many = sphere_observations(40, np.random.default_rng(0))
    assert len(split(many, 0.1)[0]) == 4 and len(split(many, 0.5)[0]) == 20
    candidates = [o.genome for o in many]
    assert screen(SPACE, candidates, many, 10, gamma=0.1) != screen(SPACE, candidates, many, 10, gamma=0.5)
    assert EvolutionSettings().surrogate_gamma == GAMMA == 0.1


@pytest.mark.parametrize(
    "settings",
    [
        {"surrogate": "gp"},
        {"surrogate_candidates": 0},
        {"surrogate_candidates": 2.5},
        {"surrogate_gamma": 0},
        {"surrogate_gamma": 1},
        {"surrogate_gamma": "a tenth"},
    ],
)
def test_bad_surrogate_settings_are_config_errors(settings):
    with pytest.raises(ConfigError, match="evolution.surrogate"):
        evolve(SPACE, Sphere(SPACE), budget=BUDGET, evolution=settings)


def test_the_tpe_surrogate_is_the_default_and_none_turns_it_off():
    assert EvolutionSettings().surrogate is Surrogate.TPE and EvolutionSettings().surrogate_candidates == 10
    fitness = Sphere(SPACE)
    evolve(
        SPACE, fitness, budget=BUDGET, evolution={"population_size": 4, "generations": 2, "surrogate": "none"}, seed=1
    )
    assert len(fitness.calls) == 4 + 2 * 4


def run(surrogate: str, seed: int, **evolution):
    fitness = Sphere(SPACE)
    settings = {"population_size": 8, "generations": 8, "surrogate": surrogate, **evolution}
    result = evolve(SPACE, fitness, budget=BUDGET, evolution=settings, seed=seed)
    return result, fitness


def test_a_surrogate_run_is_reproducible_and_evaluates_the_same_number_of_children():
    (a, fa), (b, fb) = run("tpe", 5), run("tpe", 5)
    assert fa.calls == fb.calls
    assert a.best == b.best
    assert len(fa.calls) == 8 + 8 * 8  # screening spends no extra evaluations and hits no cache
    assert run("tpe", 6)[1].calls != fa.calls


def test_the_surrogate_finds_better_configs_than_plain_evolution_at_the_same_budget():
    plain = [run("none", seed)[0].best_trials[0].values["loss"] for seed in range(8)]
    screened = [run("tpe", seed)[0].best_trials[0].values["loss"] for seed in range(8)]
    assert np.median(screened) < np.median(plain)


def test_steady_state_screens_children_too():
    result, fitness = run("tpe", 1, mode="steady_state")
    assert len(fitness.calls) == 8 + 8 * 8
    initial = [sum((g.to_unit(c[g.name]) - 0.3) ** 2 for g in SPACE) for c in fitness.calls[:8]]
    assert result.best_trials[0].values["loss"] < min(initial)


def test_a_surrogate_run_resumes_after_sigkill_as_if_never_stopped(synthetic_config, write_config, tmp_path):
    synthetic_config["fitness"]["seconds_per_trial"] = 0.03
    synthetic_config["evolution"]["surrogate"] = "tpe"
    config = write_config(synthetic_config)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert evo_cli("run", config, "--out", whole, "--quiet", "--no-plots").wait(120) == 0
    proc = evo_cli("run", config, "--out", killed, "--quiet", "--no-plots")
    wait_for(lambda: finished_trials(killed) >= 14)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    with RunStore.open(killed) as store:
        assert store.finished_generations()[-1] < 4
    resumed = evo_cli("resume", killed, "--quiet", "--no-plots")
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert final_state(killed)[:2] == final_state(whole)[:2]


def test_the_bounded_history_models_exactly_what_every_observation_would():
    """History keeps what split() needs: the best ever and the most recent, so the good
    and bad points of a long run are those of a model of every observation."""
    import random as pyrandom

    from evo.search._surrogate import BAD_WINDOW, GAMMA, MAX_GOOD, History, split

    rng = pyrandom.Random(2)
    history, every = History(), []
    for generation in range(60):
        for _ in range(16):
            genome = {"x": round(rng.random(), 4), "k": rng.choice([1, 2, 3])}
            failed = rng.random() < 0.1
            observation = Observation(genome, None if failed else (-rng.random(),), generation)
            history.add(observation)
            every.append(observation)
        window = history.window()
        assert len(window) <= BAD_WINDOW + 2 * MAX_GOOD
        ordered = sorted(every, key=lambda o: (o.generation, o.key))
        good, bad = split(window, GAMMA)
        all_good, all_bad = split(ordered, GAMMA)
        assert [o.key for o in good] == [o.key for o in all_good]
        assert [o.key for o in bad] == [o.key for o in all_bad]
    assert history.known == {o.key for o in every}
