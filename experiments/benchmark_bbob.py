"""Optimizer quality on BBOB functions: our GA against random search and Optuna.

Every method gets the same number of evaluations of the same problems. A BBOB
function (from the ``ioh`` package) is put behind a mixed search space of the kinds a
QLoRA search has: plain floats, log-scaled floats, integers, nominal categoricals and
ordered choices. Each gene's value maps to its unit interval (nominal choices through
a fixed shuffle, so their order carries no information) and from there onto one BBOB
coordinate in [-5, 5]. The objective is the precision ``f(x) - f(x*)``, minimised;
the tables show its log10.

Methods: ``ga`` (``evo.evolve`` with ``surrogate: none``, i.e. plain evolution, the
engine before surrogates), ``ga+tpe`` (``surrogate: tpe``, the default), both with
population 10 and otherwise default settings; random search; Optuna TPE and Optuna
NSGA-II, both with their defaults. Optuna's TPE + Hyperband pruner is left out: BBOB
functions have no learning curve to prune on, and an invented one would decide the
outcome.

Prints, per problem, the median and interquartile range of the best value at several
budget checkpoints and the evaluations each method needs to reach a target (the median
value of Optuna TPE at ``--target-at`` evaluations, 100), then a summary over all
problems; writes an anytime plot. Runs go on to ``--budget`` (200) so that a method
slower than TPE still gets a number.

    pip install -e '.[bench]'
    python experiments/benchmark_bbob.py --first-seed 100 --plot experiments/results/bbob_mixed.png  # ~3 min
    python experiments/benchmark_bbob.py --quick --plot /tmp/bbob.png   # ~15 s
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from evo._space import GeneKind, SearchSpace
from evo.trial import Budget, FitnessBase, Objective, Trial, TrialResult

# All 24 BBOB functions, named as the BBOB documentation does (f10, f15: the rotated ellipsoid and
# Rastrigin; f2, f3: their separable forms); the default problem set is the six of FUNCTIONS.
BBOB_NAMES = {
    1: "sphere", 2: "ellipsoid separable", 3: "rastrigin separable", 4: "bueche-rastrigin", 5: "linear slope", 6: "attractive sector",
    7: "step ellipsoid", 8: "rosenbrock", 9: "rosenbrock rotated", 10: "ellipsoid", 11: "discus",
    12: "bent cigar", 13: "sharp ridge", 14: "different powers", 15: "rastrigin", 16: "weierstrass",
    17: "schaffers f7", 18: "schaffers f7 ill-cond.", 19: "griewank-rosenbrock", 20: "schwefel",
    21: "gallagher 101", 22: "gallagher 21", 23: "katsuura", 24: "lunacek bi-rastrigin",
}  # fmt: skip
FUNCTIONS = {f: BBOB_NAMES[f] for f in (1, 7, 8, 10, 15, 21)}
DIMENSIONS = (5, 10)
FLOOR = 1e-8  # precision below which a problem counts as solved; keeps log10 finite
KINDS = ("float", "log_float", "int", "categorical", "ordered")
CHOICES = 12  # levels of the categorical and ordered-choice genes
METHODS = ("random", "ga", "ga+tpe", "optuna-tpe", "optuna-nsga2")


# -- the problem ------------------------------------------------------------------------
def mixed_space(dim: int) -> SearchSpace:
    """``dim`` genes, one per BBOB coordinate, cycling through the gene kinds."""
    spec: dict[str, dict[str, Any]] = {}
    for i in range(dim):
        kind = KINDS[i % len(KINDS)]
        name = f"x{i}_{kind}"
        if kind == "float":
            spec[name] = {"type": "float", "low": -1.0, "high": 1.0}
        elif kind == "log_float":
            spec[name] = {"type": "log_float", "low": 1e-5, "high": 1e-1}
        elif kind == "int":
            spec[name] = {"type": "int", "low": 0, "high": 40}
        elif kind == "categorical":
            spec[name] = {"type": "categorical", "choices": [f"c{j}" for j in range(CHOICES)]}
        else:
            spec[name] = {"type": "categorical", "choices": [f"o{j}" for j in range(CHOICES)], "ordered": True}
    return SearchSpace.from_spec(spec)


def _shuffle(name: str) -> list[int]:
    """A fixed permutation of a nominal gene's levels, the same in every process."""
    digest = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    return [int(i) for i in np.random.default_rng(digest).permutation(CHOICES)]


class BBOBFitness(FitnessBase):
    """A BBOB function (``ioh``) behind a mixed search space, as an :class:`evo.trial.Fitness`.

    Keeps the precision of every evaluation, in order, in ``trace``: the anytime curve.
    """

    objectives = (Objective("precision"),)

    def __init__(self, function: int, dim: int, instance: int):
        import ioh

        self.function, self.dim, self.instance = function, dim, instance
        self.problem = ioh.get_problem(function, instance, dim, ioh.ProblemClass.BBOB)
        self.space = mixed_space(dim)
        self.shuffles = {g.name: _shuffle(g.name) for g in self.space if g.nominal}
        self.trace: list[float] = []

    def fingerprint(self) -> str:
        return f"bbob-f{self.function}-d{self.dim}-i{self.instance}-mixed"

    def point(self, config: Mapping[str, Any]) -> list[float]:
        x = []
        for gene in self.space:
            value = config[gene.name]
            if gene.nominal:
                u = self.shuffles[gene.name][gene.index(value)] / (CHOICES - 1)
            else:
                u = gene.to_unit(value)
            x.append(-5.0 + 10.0 * u)
        return x

    def __call__(self, config: Mapping[str, Any]) -> float:
        precision = max(FLOOR, float(self.problem(self.point(config))) - float(self.problem.optimum.y))
        self.trace.append(precision)
        return precision

    def evaluate(self, trial: Trial) -> TrialResult:
        return TrialResult.complete({"precision": self(trial.config)})


# -- the methods --------------------------------------------------------------------------
def run_random(fitness: BBOBFitness, budget: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(budget):
        fitness(fitness.space.sample(rng))


def run_ga(fitness: BBOBFitness, budget: int, seed: int, **settings: Any) -> None:
    from evo._api import evolve

    population = settings.pop("population_size", 10)
    lam = settings.get("offspring_size") or population
    evolution = {"population_size": population, "generations": (budget - population) // lam, **settings}
    evolve(fitness.space, fitness, budget=Budget(steps=1), evolution=evolution, seed=seed)  # BBOB ignores steps


def _suggest(trial: Any, space: SearchSpace) -> dict[str, Any]:
    config = {}
    for g in space:
        if g.choices is not None:
            config[g.name] = trial.suggest_categorical(g.name, list(g.choices))
        elif g.kind is GeneKind.INT:
            config[g.name] = trial.suggest_int(g.name, g.low, g.high)
        else:
            config[g.name] = trial.suggest_float(g.name, g.low, g.high, log=g.log)
    return config


def run_optuna(sampler_name: str) -> Callable[[BBOBFitness, int, int], None]:
    def run(fitness: BBOBFitness, budget: int, seed: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = {"tpe": optuna.samplers.TPESampler, "nsga2": optuna.samplers.NSGAIISampler}[sampler_name](seed=seed)
        study = optuna.create_study(sampler=sampler, direction="minimize")
        study.optimize(lambda t: fitness(_suggest(t, fitness.space)), n_trials=budget)

    return run


# The engine's default before the wide benchmark (benchmark_bbob_wide.py) moved it, and the steps taken.
_OLD_DEFAULT = {"surrogate": "tpe", "mode": "generational", "init": "random", "surrogate_gamma": 0.2}
_SS = {**_OLD_DEFAULT, "mode": "steady_state"}

RUNNERS: dict[str, Callable[[BBOBFitness, int, int], None]] = {
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
    "default": lambda f, b, s: run_ga(f, b, s),  # whatever evolution's defaults are now
    "optuna-tpe": run_optuna("tpe"),
    "optuna-nsga2": run_optuna("nsga2"),
}
EXTRA_METHODS = tuple(m for m in RUNNERS if m not in METHODS)  # only when asked for with --methods


def one_run(task: tuple[str, int, int, int, int]) -> tuple[tuple[str, int, int, int], list[float], float]:
    """Best-so-far precision after each evaluation, for one method on one problem and seed."""
    method, function, dim, seed, budget = task
    logging.getLogger("optuna").setLevel(logging.WARNING)
    fitness = BBOBFitness(function, dim, instance=seed + 1)  # a new instance (shift, rotation) per seed
    t0 = time.perf_counter()
    RUNNERS[method](fitness, budget, seed)
    seconds = time.perf_counter() - t0
    trace = fitness.trace[:budget]
    # The GA never re-evaluates a genome it has seen (its cache), so it may spend fewer
    # than ``budget`` evaluations; its curve then stays flat, which only counts against it.
    trace += [trace[-1]] * (budget - len(trace))
    return (method, function, dim, seed), list(np.minimum.accumulate(trace)), seconds


# -- the report ------------------------------------------------------------------------------
def hitting_time(curve: np.ndarray, target: float) -> float:
    """Evaluations until the best-so-far reaches ``target``; inf when it never does."""
    hits = np.nonzero(curve <= target)[0]
    return float(hits[0] + 1) if hits.size else math.inf


def fmt_budget(x: float, budget: int) -> str:
    return f">{budget}" if not math.isfinite(x) else f"{x:.0f}"


def report(
    curves: dict, methods: list[str], problems: list[tuple[int, int]], seeds: int, budget: int, target_at: int
) -> dict:
    """Prints the tables; returns per-method summary numbers. Ranks and wins compare medians at ``target_at``."""
    checkpoints = sorted({c for c in (10, 25, 50, 100, 200) if c < budget} | {target_at, budget})
    summary = {m: {"to_target": [], "rank": [], "beats_random": 0, "beats_tpe": 0} for m in methods}
    reference = "optuna-tpe" if "optuna-tpe" in methods else methods[0]
    print(f"\nlog10 precision of the best of n evaluations: median [25%, 75%] over {seeds} seeds (lower is better);")
    print(
        f"'to target' = median evaluations to reach the median value of {reference} at n={target_at} "
        f"(>{budget}: not reached)\n"
    )
    for function, dim in problems:
        logs = {m: np.log10(np.array([curves[m, function, dim, s] for s in range(seeds)])) for m in methods}
        target = float(np.median(logs[reference][:, target_at - 1]))
        print(f"f{function} {BBOB_NAMES[function]}, {dim} dimensions (target {target:.2f})")
        print(f"  {'method':<14}" + "".join(f"{'n=' + str(c):>21}" for c in checkpoints) + f"{'to target':>11}")
        finals = {m: float(np.median(logs[m][:, target_at - 1])) for m in methods}
        order = sorted(methods, key=lambda m: finals[m])
        for m in methods:
            cells = []
            for c in checkpoints:
                q1, med, q3 = np.percentile(logs[m][:, c - 1], [25, 50, 75])
                cells.append(f"{med:7.2f} [{q1:5.2f},{q3:5.2f}]")
            hit = float(np.percentile([hitting_time(run, target + 1e-12) for run in logs[m]], 50, method="lower"))
            print(f"  {m:<14}" + "".join(f"{c:>21}" for c in cells) + f"{fmt_budget(hit, budget):>11}")
            summary[m]["to_target"].append(hit)
            summary[m]["rank"].append(order.index(m) + 1)
            summary[m]["beats_random"] += "random" in finals and finals[m] < finals["random"]
            summary[m]["beats_tpe"] += "optuna-tpe" in finals and finals[m] < finals["optuna-tpe"]
        print()
    print(f"summary over {len(problems)} problems (medians at n={target_at})")
    print(
        f"  {'method':<14}{'mean rank':>10}{'beats random':>14}{'beats tpe':>11}{'reaches target':>16}"
        f"{'median evals to target':>24}"
    )
    for m in methods:
        s = summary[m]
        reached = sum(math.isfinite(h) for h in s["to_target"])
        print(
            f"  {m:<14}{np.mean(s['rank']):>10.2f}{s['beats_random']:>11}/{len(problems):<2}"
            f"{s['beats_tpe']:>8}/{len(problems):<2}{reached:>13}/{len(problems):<2}"
            f"{fmt_budget(float(np.median(s['to_target'])), budget):>24}"
        )
    best = min((m for m in methods if m.startswith("ga")), key=lambda m: np.mean(summary[m]["rank"]), default=None)
    if best and reference == "optuna-tpe":
        ratio = float(np.median(summary[best]["to_target"])) / target_at
        shown = f"{ratio:.2f}" if math.isfinite(ratio) else f"> {budget / target_at:.1f}"
        print(
            f"\nheadline: {best} reaches the median result of optuna-tpe after {target_at} evaluations in "
            f"{shown} x {target_at} evaluations (median over problems)"
        )
    return summary


def plot(curves: dict, methods: list[str], problems: list[tuple[int, int]], seeds: int, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(problems))
    rows = math.ceil(len(problems) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, (function, dim) in zip(axes.flat, problems):
        for m in methods:
            logs = np.log10(np.array([curves[m, function, dim, s] for s in range(seeds)]))
            q1, med, q3 = np.percentile(logs, [25, 50, 75], axis=0)
            n = np.arange(1, logs.shape[1] + 1)
            (line,) = ax.plot(n, med, label=m, lw=1.5)
            ax.fill_between(n, q1, q3, color=line.get_color(), alpha=0.15, lw=0)
        ax.set_title(f"f{function} {BBOB_NAMES[function]}, d={dim}", fontsize=9)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("log10 best precision")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(problems) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"BBOB on a mixed space: median best-so-far, 25-75% band, {seeds} seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 functions, 5 dimensions, 3 seeds, 60 evaluations")
    parser.add_argument("--functions", type=int, nargs="+", default=list(FUNCTIONS), choices=list(BBOB_NAMES))
    parser.add_argument("--dims", type=int, nargs="+", default=list(DIMENSIONS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seeds (and BBOB instances) first-seed .. first-seed + seeds - 1; tune on others",
    )
    parser.add_argument("--budget", type=int, default=200, help="evaluations per run")
    parser.add_argument(
        "--target-at",
        type=int,
        default=100,
        help="the budget compared: ranks, wins and the target (optuna-tpe's median there)",
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS + EXTRA_METHODS))
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    parser.add_argument("--plot", help="write the anytime plot (PNG) here")
    args = parser.parse_args(argv)
    if args.quick:
        args.functions, args.dims, args.seeds, args.budget, args.target_at = [1, 15], [5], 3, 60, 30
    args.target_at = min(args.target_at, args.budget)
    problems = [(f, d) for f in args.functions for d in args.dims]
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    tasks = [(m, f, d, s, args.budget) for f, d in problems for m in args.methods for s in seeds]
    t0 = time.perf_counter()
    curves: dict = {}
    seconds: dict[str, float] = {m: 0.0 for m in args.methods}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for key, curve, spent in pool.map(one_run, tasks, chunksize=4):
            method, function, dim, seed = key
            curves[method, function, dim, seed - args.first_seed] = np.array(curve)
            seconds[key[0]] += spent
    print(
        f"BBOB on a mixed space ({', '.join(KINDS)} genes): {len(problems)} problems x {args.seeds} seeds x "
        f"{args.budget} evaluations, {time.perf_counter() - t0:.0f} s wall on {args.jobs} processes"
    )
    print(
        "seconds per run (method overhead): "
        + ", ".join(f"{m} {seconds[m] / (len(problems) * args.seeds):.2f}" for m in args.methods)
    )
    report(curves, args.methods, problems, args.seeds, args.budget, args.target_at)
    if args.plot:
        plot(curves, args.methods, problems, args.seeds, args.plot)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
