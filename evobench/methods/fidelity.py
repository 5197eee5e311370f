"""Every method of the fidelity benchmark, each driving the same fitness through a Ledger.

Ours run through ``evo.start_run``, the peers through Optuna's own API; all of them drive
the same fitness object, so the trial cost is the same for everyone, and each stops when
the ledger says the tokens are spent.

- ``ga``: the default GA (steady state, TPE-surrogate screening, early stopping auto: successive
  halving with Hyperband's brackets where the fitness reports curves), population P;
  ``ga-full`` every trial to its budget (the 0.2 default); ``ga-plain`` without the screening,
  ``ga-gen`` in ``mode: generational``; ``ga-mf`` with ``multi_fidelity`` on the task's rungs;
  ``ga-es`` with the median stopping rule after 25% of the budget; ``pbt``: a population of the
  budget's trials, 4 intervals.
- ``random``: random search; ``optuna-tpe``, ``optuna-nsga2``: Optuna's samplers with their defaults.
- ``optuna-tpe-hb``: TPE + Hyperband on the task's rungs; a trial trains in chunks to the rungs,
  continuing its checkpoint, and reports after each; ``optuna-tpe-median`` the same with
  Optuna's MedianPruner.
- ``dehb``, ``smac``: DEHB and SMAC3's multi-fidelity facade on the task's rungs (``mf_peers``).
- ``st-*``, ``neps-*``: Syne Tune's and NePS's schedulers, epoch by epoch (``schedulers``).
- ``ga-*`` levers (``LEVERS``): the default with one ``evolution`` setting changed, to learn which
  settings matter at small budgets.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from evo import SearchSpace, start_run
from evo.config import RunConfig, parse_config
from evo.trial import Trial
from evobench import peers
from evobench.ledger import BudgetSpent, Ledger
from evobench.methods import mf_peers, schedulers
from evobench.methods.chunks import trial_seed
from evobench.methods.schedulers import SYNE_TUNE, SYNE_TUNE_13
from evobench.tasks.fidelity import Task

# The default with one evolution setting changed (only settings the engine has): a first rung at
# 1/27 (four brackets), plain halving (one bracket), a population of 4 or 16, a Sobol first
# population, fewer or more children bred per trained one, and TPE's gamma at 0.25.
LEVERS: dict[str, dict[str, Any]] = {
    "ga-rung27": {"early_stopping": {"min_fidelity": 1 / 27, "brackets": 4}},
    "ga-bracket1": {"early_stopping": {"brackets": 1}},
    "ga-pop4": {"population_size": 4},
    "ga-pop16": {"population_size": 16},
    "ga-sobol": {"init": "sobol"},
    "ga-cand3": {"surrogate_candidates": 3},
    "ga-cand30": {"surrogate_candidates": 30},
    "ga-gamma25": {"surrogate_gamma": 0.25},
}
METHODS = (
    "ga",
    "ga-full",
    "ga-plain",
    "ga-gen",
    "ga-mf",
    "ga-es",
    "pbt",
    "random",
    "optuna-tpe",
    "optuna-nsga2",
    "optuna-tpe-hb",
    "optuna-tpe-median",
    "dehb",
    "smac",
    *SYNE_TUNE,
    *SYNE_TUNE_13,
    "neps-hyperband",
    "neps-ifbo",
    *LEVERS,
)
# What a peer needs that the bench extra does not bring, and how to get it.
INSTALL = {
    "dehb": ("dehb", "pip install --no-deps dehb loguru   # DEHB pins numpy < 2"),
    "smac": ("smac", "pip install -e '.[bench]'"),
    **{m: ("syne_tune", "pip install syne-tune==0.16.0") for m in SYNE_TUNE},
    "neps-hyperband": ("neps", "pip install torch==2.13.0 neural-pipeline-search==0.17.0   # torch first: a CPU build"),
    "neps-ifbo": ("neps", "pip install torch==2.13.0 neural-pipeline-search==0.17.0   # torch first: a CPU build"),
}
OURS = {m for m in METHODS if m.startswith("ga") or m == "pbt"}
Runner = Callable[[Task, Ledger, int, int], None]  # task, ledger, seed, budget in whole trials


def missing(method: str) -> str | None:
    """Why ``method`` cannot run here, with the line that installs what it needs; None when it can
    (ours and Optuna's always can)."""
    if method in SYNE_TUNE_13:
        if not Path(schedulers.ST13_PYTHON).exists():
            return (
                f"{method}: Syne Tune 0.13 (it pins numpy < 1.27) runs in a virtual environment of its own, "
                f"not found at {schedulers.ST13_PYTHON}: python3 -m venv DIR && DIR/bin/pip install torch==2.13.0 "
                "syne-tune==0.13.0 'numpy<1.27' scipy autograd statsmodels, then EVOBENCH_SYNE_TUNE_13=DIR/bin/python"
            )
        return None
    if method in INSTALL and importlib.util.find_spec(INSTALL[method][0]) is None:
        return f"{method}: not installed ({INSTALL[method][1]})"
    if method == "neps-ifbo":
        why = schedulers.ifbo_weights_missing()
        return f"{method}: {why}; ifbo downloads them from figshare at first use" if why else None
    return None


def installed(method: str) -> bool:
    """Whether ``method`` can run here (see :func:`missing`)."""
    return missing(method) is None


def fitness_spec(task: Task, method: str) -> dict[str, Any]:
    """The fitness a method runs on: early stopping needs mid-trial evaluations on some tasks."""
    return {**task.fitness, **(task.es_fitness if method == "ga-es" else {})}


def evo_config(task: Task, seed: int, **evolution: Any) -> RunConfig:
    """The run config of one of our methods; a bad ``--set`` fails here, before anything trains."""
    raw = {
        "seed": seed,
        "fitness": dict(task.fitness),
        "budget": {k: v for k, v in task.budget.as_dict().items() if v is not None},
        "search_space": task.space,
        "fixed": task.fixed,
        "artifacts": "none",
        "evolution": {"population_size": task.population, "generations": 10_000, **task.evolution, **evolution},
    }
    return parse_config(raw)


def run_evo(task: Task, ledger: Ledger, seed: int, budget_trials: int, **evolution: Any) -> None:
    try:
        start_run(evo_config(task, seed, **evolution), ledger, None)
    except BudgetSpent:
        pass


def run_random(task: Task, ledger: Ledger, seed: int, budget_trials: int) -> None:
    space, rng = SearchSpace.from_spec(task.space), np.random.default_rng(seed)
    try:
        for i in range(10**6):
            ledger.evaluate(Trial(i, {**task.fixed, **space.sample(rng)}, task.budget, trial_seed(seed, i)))
    except BudgetSpent:
        pass


def run_optuna(task: Task, ledger: Ledger, seed: int, budget_trials: int, name: str, pruner: str | None = None) -> None:
    """Optuna's sampler ``name``; with a ``pruner`` (hyperband, median) a trial trains in chunks to the rungs."""
    import optuna

    space = SearchSpace.from_spec(task.space)
    resources = task.hyperband_resources
    pruners = {"hyperband": lambda: peers.hyperband(resources, task.eta), "median": peers.median}
    study = peers.study(name, seed, pruner=pruners[pruner]() if pruner else None)
    chunked = pruner is not None
    scratch = tempfile.TemporaryDirectory(prefix="bench-hb-")

    def objective(trial: Any) -> float:
        config = {**task.fixed, **peers.suggest(trial, space)}
        seed_i = trial_seed(seed, trial.number)
        if not chunked:
            result = ledger.evaluate(Trial(trial.number, config, task.budget, seed_i))
            return result.values[ledger.objectives[0].name] if result.ok else float("nan")
        previous = None
        for rung, fidelity in enumerate(task.rungs):
            here = Path(scratch.name) / f"{trial.number}-{rung}"
            result = ledger.evaluate(
                Trial(
                    trial.number,
                    config,
                    task.budget,
                    seed_i,
                    fidelity=fidelity,
                    resume_from=previous,
                    checkpoint_dir=here if fidelity < 1 else None,
                )
            )
            if not result.ok:
                return float("nan")
            trial.report(result.values[ledger.objectives[0].name], step=round(fidelity * resources))
            if fidelity < 1 and trial.should_prune():
                raise optuna.TrialPruned()
            previous = here
        return result.values[ledger.objectives[0].name]

    try:
        study.optimize(objective, n_trials=10**6)
    except BudgetSpent:
        pass
    finally:
        scratch.cleanup()


def _scheduler(run: Callable[..., None], name: str) -> Runner:
    return lambda t, ledger, s, b: run(t, ledger, s, b, name)


def _lever(settings: dict[str, Any]) -> Runner:
    return lambda t, ledger, s, b: run_evo(t, ledger, s, b, **settings)


RUNNERS: dict[str, Runner] = {
    "ga": lambda t, ledger, s, b: run_evo(t, ledger, s, b),
    "ga-full": lambda t, ledger, s, b: run_evo(t, ledger, s, b, early_stopping=None),
    "ga-plain": lambda t, ledger, s, b: run_evo(t, ledger, s, b, surrogate="none"),
    "ga-gen": lambda t, ledger, s, b: run_evo(t, ledger, s, b, mode="generational"),
    "ga-mf": lambda t, ledger, s, b: run_evo(
        t, ledger, s, b, offspring_size=t.mf_offspring, multi_fidelity={"eta": t.eta, "min_fidelity": t.rungs[0]}
    ),
    "ga-es": lambda t, ledger, s, b: run_evo(t, ledger, s, b, early_stopping={"rule": "median", "warmup": 0.25}),
    "pbt": lambda t, ledger, s, b: run_evo(t, ledger, s, b, population_size=b, mode="pbt", pbt={"interval": 0.25}),
    "random": run_random,
    "optuna-tpe": lambda t, ledger, s, b: run_optuna(t, ledger, s, b, "tpe"),
    "optuna-nsga2": lambda t, ledger, s, b: run_optuna(t, ledger, s, b, "nsga2"),
    "optuna-tpe-hb": lambda t, ledger, s, b: run_optuna(t, ledger, s, b, "tpe", pruner="hyperband"),
    "optuna-tpe-median": lambda t, ledger, s, b: run_optuna(t, ledger, s, b, "tpe", pruner="median"),
    "dehb": lambda t, ledger, s, b: mf_peers.run_dehb(t, ledger, s, b),
    "smac": lambda t, ledger, s, b: mf_peers.run_smac(t, ledger, s, b),
    **{m: _scheduler(schedulers.run_syne_tune, m) for m in (*SYNE_TUNE, *SYNE_TUNE_13)},
    "neps-hyperband": _scheduler(schedulers.run_neps, "hyperband"),
    "neps-ifbo": _scheduler(schedulers.run_neps, "ifbo"),
    **{m: _lever(settings) for m, settings in LEVERS.items()},
}
