"""Executors: where trials run. The evaluator hands them trials and collects results.

An executor runs up to ``capacity`` trials at once and answers in completion order::

    ticket = executor.submit(trial)
    ticket, result = executor.wait()   # the next trial to finish, whichever it is

``local`` runs them in the driver (one at a time, a batch at a time for a fitness whose
``batch_capacity`` is above 1, or on threads for fitnesses that only wait, such as a
sleeping synthetic one), or with several ``devices`` one worker per device, side by
side; ``ray`` runs them on actors of a Ray cluster, one fitness per actor, built once.
Ray is imported only when asked for.
"""

from __future__ import annotations

import dataclasses
import functools
import socket
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from evo.config import AUTO_DEVICES, ExecutorSettings, ExecutorType
from evo.trial import ConfigError, FailureReason, Fitness, Trial, TrialResult

__all__ = [
    "Executor",
    "ExecutorSettings",
    "ExecutorType",
    "device_labels",
    "labelled",
    "make_executor",
    "run_batch",
    "run_trial",
]


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


def labelled(result: TrialResult, device: str) -> TrialResult:
    """``result`` with the label of the device it ran on, in ``metrics["device_label"]``."""
    return dataclasses.replace(result, metrics={**result.metrics, "device_label": device})


def device_labels(settings: ExecutorSettings, fitness: Fitness) -> tuple[str, ...]:
    """The devices the local executor runs a worker on; empty: one worker, on ``fitness`` itself.

    ``auto`` asks the fitness (the engine never looks at hardware); ``workers`` without a
    list of devices keeps its threads on the one fitness.
    """
    if settings.devices != AUTO_DEVICES:
        return tuple(str(label) for label in settings.devices)
    if settings.workers is not None:
        return ()
    return tuple(str(label) for label in fitness.visible_devices())


def _same(fitness: Fitness) -> Fitness:
    return fitness


REACH_SECONDS = 5.0  # an address that does not answer a TCP connection in this long is refused


def check_reachable(address: str | None, timeout: float = REACH_SECONDS) -> None:
    """Refuse, within ``timeout`` seconds, a cluster address (``host:port``, ``ray://host:port``)
    that does not accept a connection, before Ray's own retries spend half a minute on it.
    ``None``, ``auto`` and ``local`` find or start a cluster on this machine: nothing to probe."""
    if address is None or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"executor.address {address!r}: expected host:port or ray://host:port, or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConfigError(
            f"executor.address {address!r}: cannot reach it within {timeout:g} s ({reason}); "
            "start the cluster (ray start --head) or fix --ray-address"
        ) from None


def make_executor(
    settings: ExecutorSettings, fitness: Fitness, factory: Callable[[], Fitness] | None = None
) -> Executor:
    """The executor a run config asks for.

    ``factory`` builds the fitness on a remote worker; it must pickle (e.g.
    ``functools.partial(make_fitness, spec)``). Without it the ``fitness`` object
    itself is pickled and shipped, which suits light fitnesses such as the synthetic one.
    """
    if settings.type is ExecutorType.LOCAL:
        from evo.executors._devices import DeviceExecutor
        from evo.executors._local import LocalExecutor

        devices = device_labels(settings, fitness)
        if len(devices) > 1:
            return DeviceExecutor(fitness, devices)
        return LocalExecutor(fitness, workers=settings.workers or 1, device=devices[0] if devices else None)
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
