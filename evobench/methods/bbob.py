"""Every method the BBOB benchmarks compare, given the same number of evaluations.

``ga`` is ``evo.evolve`` with ``surrogate: none`` (plain evolution, the engine before
surrogates), ``ga+tpe`` with ``surrogate: tpe``, both with population 10 and the settings
the engine had before the wide benchmark moved them; ``default`` is whatever evolution's
defaults are now. Random search and Optuna's TPE and NSGA-II run with their defaults.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from evo import Budget, evolve
from evobench import peers
from evobench.tasks.bbob import BBOBFitness

METHODS = ("random", "ga", "ga+tpe", "optuna-tpe", "optuna-nsga2")
Runner = Callable[[BBOBFitness, int, int], None]  # fitness, evaluations, seed


def run_random(fitness: BBOBFitness, budget: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(budget):
        fitness(fitness.space.sample(rng))


def run_ga(fitness: BBOBFitness, budget: int, seed: int, **settings: Any) -> None:
    population = settings.pop("population_size", 10)
    lam = settings.get("offspring_size") or population
    evolution = {"population_size": population, "generations": (budget - population) // lam, **settings}
    evolve(fitness.space, fitness, budget=Budget(steps=1), evolution=evolution, seed=seed)  # BBOB ignores steps


def run_optuna(sampler_name: str) -> Runner:
    def run(fitness: BBOBFitness, budget: int, seed: int) -> None:
        study = peers.study(sampler_name, seed)
        study.optimize(lambda t: fitness(peers.suggest(t, fitness.space)), n_trials=budget)

    return run


# The engine's default before the wide benchmark (benchmark_bbob_wide.py) moved it, and the steps taken.
_OLD_DEFAULT = {"surrogate": "tpe", "mode": "generational", "init": "random", "surrogate_gamma": 0.2}
_SS = {**_OLD_DEFAULT, "mode": "steady_state"}

RUNNERS: dict[str, Runner] = {
    "random": run_random,
    "ga": lambda f, b, s: run_ga(f, b, s, **{**_OLD_DEFAULT, "surrogate": "none"}),
    "ga+tpe": lambda f, b, s: run_ga(f, b, s, **_OLD_DEFAULT),
    # steady state: each child is bred (and screened) as soon as the previous one finished, so the model
    # learns after every trial as TPE's does, instead of once per generation
    "ga+tpe-ss": lambda f, b, s: run_ga(f, b, s, **_SS),
    "ga+tpe-sobol": lambda f, b, s: run_ga(f, b, s, **{**_OLD_DEFAULT, "init": "sobol"}),
    "ga+tpe-ss-sobol": lambda f, b, s: run_ga(f, b, s, **{**_SS, "init": "sobol"}),
    # more bred children screened per evaluated one: a stronger pull towards what the model likes
    "ga+tpe-ss-c25": lambda f, b, s: run_ga(f, b, s, **{**_SS, "surrogate_candidates": 25}),
    "ga+tpe-ss-c50": lambda f, b, s: run_ga(f, b, s, **{**_SS, "surrogate_candidates": 50}),
    # the population steady state breeds from: smaller exploits sooner, larger keeps more variety
    "ga+tpe-ss-p6": lambda f, b, s: run_ga(f, b, s, **{**_SS, "population_size": 6}),
    "ga+tpe-ss-p16": lambda f, b, s: run_ga(f, b, s, **{**_SS, "population_size": 16}),
    # exploration: one random newcomer per 10 children
    "ga+tpe-ss-imm": lambda f, b, s: run_ga(f, b, s, **{**_SS, "immigrants": 1}),
    "ga+tpe-ss-near": lambda f, b, s: run_ga(f, b, s, **{**_SS, "replacement": "nearest"}),
    "default": lambda f, b, s: run_ga(f, b, s),
    "optuna-tpe": run_optuna("tpe"),
    "optuna-nsga2": run_optuna("nsga2"),
}
EXTRA_METHODS = tuple(m for m in RUNNERS if m not in METHODS)  # only when asked for with --methods


def one_run(task: tuple[str, int, int, int, int]) -> tuple[tuple[str, int, int, int], list[float], float]:
    """Best-so-far precision after each evaluation, for one method on one problem and seed
    (a picklable function of one tuple, for a process pool)."""
    method, function, dim, seed, budget = task
    fitness = BBOBFitness(function, dim, instance=seed + 1)  # a new instance (shift, rotation) per seed
    t0 = time.perf_counter()
    RUNNERS[method](fitness, budget, seed)
    seconds = time.perf_counter() - t0
    trace = fitness.trace[:budget]
    # The GA never re-evaluates a genome it has seen (its cache), so it may spend fewer
    # than ``budget`` evaluations; its curve then stays flat, which only counts against it.
    trace += [trace[-1]] * (budget - len(trace))
    return (method, function, dim, seed), list(np.minimum.accumulate(trace)), seconds
