"""Executors: where trials run. The evaluator hands them trials and collects results.

An executor runs up to ``capacity`` trials at once and answers in completion order::

    ticket = executor.submit(trial)
    ticket, result = executor.wait()   # the next trial to finish, whichever it is

``local`` runs them in the driver (one at a time, a batch at a time for a fitness whose
``batch_capacity`` is above 1, or on threads for fitnesses that only wait, such as a
sleeping synthetic one); ``ray`` runs them on actors of a Ray cluster, one fitness per
actor, built once. Ray is imported only when asked for.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from evo.config import ExecutorSettings, ExecutorType
from evo.trial import ConfigError, FailureReason, Fitness, Trial, TrialResult

__all__ = ["Executor", "ExecutorSettings", "ExecutorType", "make_executor", "run_batch", "run_trial"]


class Executor(Protocol):
    capacity: int  # trials it runs at once

    def submit(self, trial: Trial) -> int:
        """Start (or queue) a trial; returns its ticket."""

    def wait(self) -> tuple[int, TrialResult]:
        """Block until a submitted trial finishes; each ticket is answered exactly once."""

    def close(self) -> None:
        """Stop the workers; trials still in flight are abandoned (the store marks them on resume)."""


def run_trial(fitness: Fitness, trial: Trial) -> TrialResult:
    """Evaluate one trial wherever the fitness lives; an exception becomes a failed trial."""
    try:
        result = fitness.evaluate(trial)
        if not isinstance(result, TrialResult):
            raise TypeError(f"fitness returned {type(result).__name__}, not a TrialResult")
        return result
    except Exception as exc:  # a failing trial never stops the run
        return _failure(exc)


def run_batch(fitness: Fitness, trials: list[Trial]) -> list[TrialResult]:
    """Evaluate trials together (``fitness.evaluate_batch``); one alone goes through :func:`run_trial`.

    An exception, or an answer that is not one TrialResult per trial, fails every trial of the batch.
    """
    if len(trials) == 1:
        return [run_trial(fitness, trials[0])]
    try:
        results = list(fitness.evaluate_batch(trials))
        if len(results) != len(trials) or not all(isinstance(r, TrialResult) for r in results):
            raise TypeError(
                f"evaluate_batch answered {len(results)} results for {len(trials)} trials, not TrialResults"
            )
        return results
    except Exception as exc:
        return [_failure(exc)] * len(trials)


def _failure(exc: Exception) -> TrialResult:
    last = traceback.extract_tb(exc.__traceback__)[-1:]
    where = f" (at {Path(last[0].filename).name}:{last[0].lineno})" if last else ""
    return TrialResult.failed(FailureReason.EXCEPTION, f"{type(exc).__name__}: {exc}{where}")


def _same(fitness: Fitness) -> Fitness:
    return fitness


def make_executor(
    settings: ExecutorSettings, fitness: Fitness, factory: Callable[[], Fitness] | None = None
) -> Executor:
    """The executor a run config asks for.

    ``factory`` builds the fitness on a remote worker; it must pickle (e.g.
    ``functools.partial(make_fitness, spec)``). Without it the ``fitness`` object
    itself is pickled and shipped, which suits light fitnesses such as the synthetic one.
    """
    if settings.type is ExecutorType.LOCAL:
        from evo.executors._local import LocalExecutor

        return LocalExecutor(fitness, workers=settings.workers or 1)
    try:
        from evo.executors._ray import RayExecutor
    except ModuleNotFoundError as exc:
        if exc.name != "ray" and not str(exc.name).startswith("ray."):
            raise
        raise ConfigError("executor.type: ray is not installed; pip install 'evo-qlora[ray]'") from None
    return RayExecutor(
        factory or functools.partial(_same, fitness),
        address=settings.address,
        workers=settings.workers,
        cpus_per_trial=settings.cpus_per_trial,
        gpus_per_trial=settings.gpus_per_trial,
        max_retries=settings.max_retries,
    )
