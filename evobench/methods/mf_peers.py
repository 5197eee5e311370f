"""The multi-fidelity peers that are not Optuna: DEHB and SMAC3's multi-fidelity facade.

Each is driven as its users drive it, through its own ask/tell interface, on a
ConfigSpace built from the same search space our GA searches; a trial at a fidelity
below 1 trains that share of the budget from scratch (neither continues a checkpoint),
and every token it trains is paid for on the ledger, whose ``BudgetSpent`` ends the run.
Both are imported inside the functions: DEHB pins numpy below 2 (install it with
``pip install --no-deps dehb loguru``), SMAC comes with the ``bench`` extra.
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any

import numpy as np

from evo import GeneKind, SearchSpace
from evo.trial import Trial
from evobench.ledger import BudgetSpent, Ledger
from evobench.methods.chunks import trial_seed
from evobench.tasks.fidelity import Task

FAILED = 1e9  # what a failed trial reports: both minimise, and neither takes inf gladly


def configspace(space: SearchSpace, seed: int) -> Any:
    """The space as ConfigSpace hyperparameters: choices and stepped ranges as their values'
    indices (ordinal where the gene is ordered), other ranges as ranges (log where ours are)."""
    from ConfigSpace import ConfigurationSpace, Float, Integer
    from ConfigSpace.hyperparameters import CategoricalHyperparameter, OrdinalHyperparameter

    cs = ConfigurationSpace(seed=seed)
    for g in space:
        values = grid(g)
        if values is not None:
            kind = OrdinalHyperparameter if ordered(g) else CategoricalHyperparameter
            cs.add(kind(g.name, list(range(len(values)))))
        elif g.kind is GeneKind.INT:
            cs.add(Integer(g.name, (int(g.low), int(g.high)), log=g.log))
        else:
            cs.add(Float(g.name, (float(g.low), float(g.high)), log=g.log))
    return cs


def decode(values: dict[str, Any], space: SearchSpace) -> dict[str, Any]:
    """A ConfigSpace configuration as our genome."""
    config = {}
    for g in space:
        values_of, v = grid(g), values[g.name]
        config[g.name] = (
            values_of[int(v)] if values_of is not None else (int(v) if g.kind is GeneKind.INT else float(v))
        )
    return config


def grid(g: Any) -> list[Any] | None:
    if g.choices is not None:
        return list(g.choices)
    if g.kind is GeneKind.BOOL:
        return [False, True]
    if g.step and not g.log:
        n = int(round((g.high - g.low) / g.step)) + 1
        points = [g.low + i * g.step for i in range(n)]
        return [int(p) for p in points] if g.kind is GeneKind.INT else [round(float(p), 12) for p in points]
    return None


def ordered(g: Any) -> bool:
    return g.kind in (GeneKind.INT, GeneKind.FLOAT, GeneKind.LOG_FLOAT) or g.ordered


def _value(ledger: Ledger, task: Task, config: dict[str, Any], number: int, seed: int, fidelity: float) -> float:
    trial = Trial(number, {**task.fixed, **config}, task.budget, trial_seed(seed, number), fidelity=fidelity)
    result = ledger.evaluate(trial)
    value = result.values.get(ledger.objectives[0].name) if result.ok else None
    return float(value) if value is not None and np.isfinite(value) else FAILED


def run_dehb(task: Task, ledger: Ledger, seed: int, budget_trials: int) -> None:
    """DEHB with its defaults on the task's rungs (``min_fidelity``: the first rung, ``eta``: the task's)."""
    from dehb import DEHB

    space = SearchSpace.from_spec(task.space)
    with tempfile.TemporaryDirectory(prefix="bench-dehb-") as out:
        dehb = DEHB(
            cs=configspace(space, seed),
            min_fidelity=task.rungs[0],
            max_fidelity=1.0,
            eta=task.eta,
            n_workers=1,
            seed=seed,
            output_path=out,
            log_level="ERROR",
            save_freq=None,
        )
        number = 0
        try:
            while True:
                job = dehb.ask()
                fidelity = min(float(job["fidelity"]), 1.0)
                value = _value(ledger, task, decode(dict(job["config"]), space), number, seed, fidelity)
                dehb.tell(job, {"fitness": value, "cost": fidelity})
                number += 1
        except BudgetSpent:
            pass


def run_smac(task: Task, ledger: Ledger, seed: int, budget_trials: int) -> None:
    """SMAC3's MultiFidelityFacade (random forest + Hyperband) with its defaults on the task's rungs."""
    from smac import MultiFidelityFacade, Scenario
    from smac.runhistory.dataclasses import TrialValue

    space = SearchSpace.from_spec(task.space)
    with tempfile.TemporaryDirectory(prefix="bench-smac-") as out:
        scenario = Scenario(
            configspace(space, seed),
            name=f"benchmark-{seed}",
            output_directory=out,
            deterministic=True,
            n_trials=10**6,
            min_budget=task.rungs[0],
            max_budget=1.0,
            seed=seed,
        )
        smac = MultiFidelityFacade(
            scenario,
            target_function=lambda config, seed=0, budget=1.0: 0.0,  # never called: ask/tell
            intensifier=MultiFidelityFacade.get_intensifier(scenario, eta=task.eta),
            logging_level=logging.ERROR,
            overwrite=True,
        )
        number = 0
        try:
            while True:
                info = smac.ask()
                fidelity = min(float(info.budget if info.budget is not None else 1.0), 1.0)
                value = _value(ledger, task, decode(dict(info.config), space), number, seed, fidelity)
                smac.tell(info, TrialValue(cost=value))
                number += 1
        except BudgetSpent:
            pass
