"""Optuna glue for every benchmark: the peers are driven through their own API.

Optuna is a dependency of the benchmarks only (the ``[bench]`` extra), never of the tool,
so it is imported inside the functions.
"""

from __future__ import annotations

from typing import Any

from evo import GeneKind, SearchSpace

SAMPLERS = ("tpe", "nsga2")


def suggest(trial: Any, space: SearchSpace) -> dict[str, Any]:
    """A config drawn by an Optuna trial from the same space our GA searches."""
    config = {}
    for g in space:
        if g.choices is not None:
            index = trial.suggest_categorical(g.name, list(range(len(g.choices))))  # list choices are not hashable
            config[g.name] = g.choices[index]
        elif g.kind is GeneKind.INT:
            config[g.name] = trial.suggest_int(g.name, int(g.low), int(g.high), step=int(g.step or 1), log=g.log)
        else:
            config[g.name] = trial.suggest_float(g.name, g.low, g.high, log=g.log, step=None if g.log else g.step)
    return config


def sampler(name: str, seed: int) -> Any:
    """Optuna's TPE or NSGA-II sampler with its defaults, seeded."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials are expected; counted by the caller
    return {"tpe": optuna.samplers.TPESampler, "nsga2": optuna.samplers.NSGAIISampler}[name](seed=seed)


def hyperband(max_resource: int, eta: int) -> Any:
    """Optuna's Hyperband pruner on rungs counted in units of the first (``min_resource=1``)."""
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_resource, reduction_factor=eta)


def median() -> Any:
    """Optuna's MedianPruner with its defaults (5 startup trials, no warm-up steps)."""
    import optuna

    return optuna.pruners.MedianPruner()


def study(sampler_name: str, seed: int, pruner: Any = None) -> Any:
    """A minimising study named after its seed: Hyperband puts a trial in a bracket by a hash
    of the study's name, so a fixed name makes a seed's run repeatable."""
    import optuna

    return optuna.create_study(
        study_name=f"benchmark-{seed}", sampler=sampler(sampler_name, seed), pruner=pruner, direction="minimize"
    )
