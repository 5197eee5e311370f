"""Asynchronous steady-state evolution with the local executor (one worker, or threads)."""

import os
import signal

import pytest

from evo.cli import main
from evo.config import parse_config
from evo.run import start_run
from evo.storage import RunStore
from evo.trial import ConfigError, FailureReason
from fitness.synthetic import SyntheticFitness
from tests.evo.run.test_resume import evo, finished_trials, wait_for


def run(config, run_dir, workers=1):
    cfg = parse_config({**config, "executor": {"workers": workers}})
    return start_run(cfg, SyntheticFitness.from_spec(cfg.fitness), run_dir)


def steady(config, **evolution):
    config["evolution"].update(mode="steady_state", **evolution)
    return config


def table(run_dir):
    with RunStore.open(run_dir) as store:
        return [(i.generation, i.slot, i.genome, i.origin, store.trial(i.trial_id).values) for i in store.individuals()]


def test_every_child_enters_once_and_every_pseudo_generation_is_recorded(synthetic_config, tmp_path, capsys):
    result = run(steady(synthetic_config, immigrants=1), tmp_path / "a")
    mu, generations = 6, 4
    with RunStore.open(tmp_path / "a") as store:
        individuals = store.individuals()
        entered = store.entries()
        assert store.finished_generations() == list(range(generations + 1))
        assert len(store.population(generations)) == mu
    assert len(individuals) == len(entered) == len(set(entered)) == mu + generations * mu
    assert all(i.trial_id is not None for i in individuals)
    assert [i.origin for i in individuals if i.generation == 2].count("immigrant") == 1
    bests = [row["best"] for row in result.history]
    assert all(b2 <= b1 for b1, b2 in zip(bests, bests[1:])) and bests[-1] < bests[0]
    # one worker: completion order is submission order, so a seed gives one run
    run(steady(synthetic_config, immigrants=1), tmp_path / "b")
    assert table(tmp_path / "a") == table(tmp_path / "b")
    assert main(["status", str(tmp_path / "a")]) == 0
    assert "generations finished: 5/5" in capsys.readouterr().out


def overlaps_across_generations(run_dir):
    """Trials of a later generation that started before one of an earlier generation ended."""
    with RunStore.open(run_dir) as store:
        trials = [store.trial(i.trial_id) for i in store.individuals() if i.generation >= 0]
    return sum(1 for a in trials for b in trials if b.generation > a.generation and b.started_at < a.finished_at)


def test_no_generation_barrier_in_steady_state(synthetic_config, tmp_path):
    synthetic_config["fitness"].update(seconds_per_trial=0.03, duration_spread=1.0)
    synthetic_config["evolution"]["mode"] = "generational"
    run(synthetic_config, tmp_path / "generational", workers=3)
    run(steady(synthetic_config), tmp_path / "steady", workers=3)
    assert overlaps_across_generations(tmp_path / "generational") == 0
    assert overlaps_across_generations(tmp_path / "steady") > 0
    with RunStore.open(tmp_path / "steady") as store:
        assert len(store.individuals()) == 6 + 4 * 6 and store.finished_generations()[-1] == 4


def test_steady_state_resumes_after_sigkill_without_counting_anything_twice(synthetic_config, write_config, tmp_path):
    synthetic_config["fitness"].update(seconds_per_trial=0.05, duration_spread=0.5)
    synthetic_config["executor"] = {"workers": 3}
    config = write_config(steady(synthetic_config, generations=6))
    run_dir = tmp_path / "run"
    proc = evo("run", config, "--out", run_dir, "--quiet", "--no-plots")
    wait_for(lambda: finished_trials(run_dir) >= 16)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    with RunStore.open(run_dir) as store:
        before = {t.id: t.values for t in store.trials() if t.ok}
        assert len(store.entries()) < 6 + 6 * 6  # really interrupted

    resumed = evo("resume", run_dir, "--quiet", "--no-plots")
    assert resumed.wait(120) == 0, resumed.stderr.read()
    with RunStore.open(run_dir) as store:
        trials, individuals = store.trials(), store.individuals()
        entered = store.entries()
        assert store.finished_generations() == list(range(7))
    assert len(individuals) == len(entered) == len(set(entered)) == 6 + 6 * 6
    assert all({t.id: t.values for t in trials if t.ok}[i] == v for i, v in before.items())
    killed = [t for t in trials if t.reason is FailureReason.KILLED]
    assert len(killed) <= 3  # at most one per worker was in flight, and only those ran again
    linked = [i.trial_id for i in individuals]
    assert len(set(linked)) == len(trials) - len(killed)


@pytest.mark.parametrize(
    "evolution, message",
    [
        ({"mode": "asynchronous"}, "evolution.mode: unknown value 'asynchronous'"),
        ({"mode": "steady_state", "strategy": "mu_comma_lambda"}, "evolution.strategy: steady_state"),
        (
            {"mode": "generational", "replacement": "nearest"},
            "evolution.replacement: nearest is for mode: steady_state",
        ),
        ({"replacement": "closest"}, "evolution.replacement: unknown value 'closest'"),
    ],
)
def test_bad_mode_settings_are_config_errors(synthetic_config, evolution, message):
    synthetic_config["evolution"].update(evolution)
    with pytest.raises(ConfigError, match=message):
        parse_config(synthetic_config)


def members_after(replacement, population, child, mu=3):
    """The population once ``child`` has entered, as (genome x, value) pairs."""
    from types import SimpleNamespace

    from deap import base

    from evo.config import Replacement
    from evo.space import SearchSpace
    from evo.strategies._steady_state import _survivors

    class Fitness(base.Fitness):
        weights = (-1.0,)

    def individual(i, x, value):
        ind = type("Individual", (dict,), {})(x=x)
        ind.id, ind.ok = i, value is not None
        ind.fitness = Fitness((value if value is not None else 1e9,))
        return ind

    ctx = SimpleNamespace(
        settings=SimpleNamespace(population_size=mu, replacement=Replacement(replacement)),
        multi_objective=False,
        space=SearchSpace.from_spec({"x": {"type": "float", "low": 0.0, "high": 1.0}}),
    )
    members = [individual(i, x, v) for i, (x, v) in enumerate(population)]
    out = _survivors(ctx, members, individual(99, *child))
    return sorted((m["x"], m.fitness.values[0] if m.ok else None) for m in out)


def test_a_child_displaces_the_worst_member_or_the_nearest_one_it_beats():
    population = [(0.1, 1.0), (0.5, 3.0), (0.9, 5.0)]
    assert members_after("worst", population, (0.45, 4.0)) == [(0.1, 1.0), (0.45, 4.0), (0.5, 3.0)]
    # it beats only the member at 0.9, far away: crowding replaces that one too
    assert members_after("nearest", population, (0.45, 4.0)) == [(0.1, 1.0), (0.45, 4.0), (0.5, 3.0)]
    # it beats both neighbours: the nearer one goes, the worst member's niche stays
    assert members_after("nearest", population, (0.45, 2.0)) == [(0.1, 1.0), (0.45, 2.0), (0.9, 5.0)]
    assert members_after("worst", population, (0.45, 2.0)) == [(0.1, 1.0), (0.45, 2.0), (0.5, 3.0)]
    # a child no better than anyone is dropped; a failed one too; a failed member is beaten by any child
    assert members_after("nearest", population, (0.12, 6.0)) == sorted(population)
    assert members_after("nearest", population, (0.12, None)) == sorted(population)
    failed = [(0.1, 1.0), (0.5, None), (0.9, 5.0)]
    assert members_after("nearest", failed, (0.85, 9.0)) == [(0.1, 1.0), (0.85, 9.0), (0.9, 5.0)]
    # while the population fills up, everyone enters
    assert members_after("nearest", population[:2], (0.12, 6.0), mu=3) == [(0.1, 1.0), (0.12, 6.0), (0.5, 3.0)]


def test_nearest_replacement_keeps_the_population_more_diverse(synthetic_config, tmp_path):
    from evo.cli import main as cli

    diversity = {}
    for replacement in ("worst", "nearest"):
        run(steady(synthetic_config, generations=8, replacement=replacement), tmp_path / replacement)
        with RunStore.open(tmp_path / replacement) as store:
            diversity[replacement] = [row["diversity"] for row in store.generation_stats()]
    assert cli(["status", str(tmp_path / "nearest")]) == 0
    assert diversity["nearest"][0] == diversity["worst"][0]  # the same first population
    assert sum(diversity["nearest"][4:]) > sum(diversity["worst"][4:])
