"""Optuna glue shared by the benchmarks: the peers are driven through their own API.

Optuna is a dependency of the benchmarks only (the ``[bench]`` extra), never of the tool.
"""

from __future__ import annotations

from typing import Any

from evo._space import GeneKind, SearchSpace


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
