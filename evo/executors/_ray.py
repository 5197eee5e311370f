"""Trials on a Ray cluster: long-lived actors, supervised by the driver.

Each actor builds the fitness once (so a QLoRA fitness loads its quantized base model
once per actor) and runs trials one after another. On a cluster with GPUs each actor
reserves one (``gpus_per_trial``, 1 by default): Ray sets its ``CUDA_VISIBLE_DEVICES``,
which the QLoRA worker subprocess inherits, and each result records the GPU
(``metrics["device_label"]``), as the local executor's ``devices`` do. The driver keeps the queue: a
trial goes to whichever actor is idle, so slow trials never hold up fast ones.

An actor that dies mid-trial (killed process, OOM kill, lost node) is replaced by a
new one and its trial is queued again, at most ``max_retries`` times; after that the
trial is answered as FAILED with reason KILLED. Each submitted trial is answered
exactly once, so no evaluation is lost or counted twice.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
from collections import deque
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

from evo.executors import check_reachable, labelled, run_trial
from evo.trial import ConfigError, FailureReason, Fitness, Trial, TrialResult

log = logging.getLogger(__name__)

# What a dead or unreachable worker looks like from the driver (RayActorError covers
# ActorDiedError, ActorUnavailableError and the OOM killer's victims).
_WORKER_LOST = (RayActorError, WorkerCrashedError)


class TrialWorker:
    """The body of one actor: a fitness, built once, evaluating one trial at a time."""

    def __init__(self, factory: Callable[[], Fitness]):
        self.fitness = factory()

    def pid(self) -> int:
        return os.getpid()

    def evaluate(self, trial: Trial) -> TrialResult:
        result = run_trial(self.fitness, trial)
        gpus = ray.get_gpu_ids()  # what Ray reserved for this actor (its CUDA_VISIBLE_DEVICES)
        return labelled(result, ",".join(str(gpu) for gpu in gpus)) if gpus else result


class RayExecutor:
    def __init__(
        self,
        factory: Callable[[], Fitness],
        *,
        address: str | None = None,
        workers: int | None = None,
        cpus_per_trial: float = 1.0,
        gpus_per_trial: float | None = None,
        max_retries: int = 2,
    ):
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:  # connect to ``address``, or start a cluster on this machine
            check_reachable(address)
            try:
                ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
            except ConnectionError as exc:  # 'auto' with no cluster running, a head that went away
                raise ConfigError(f"executor.address {address!r}: {_first_line(exc)}") from None
        resources = ray.cluster_resources()
        if gpus_per_trial is None:  # one GPU per actor wherever the cluster has GPUs
            gpus_per_trial = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
        self.capacity = workers or _fitting(resources, cpus_per_trial, gpus_per_trial)
        self.max_retries = max_retries
        self._factory = factory
        self._actor_cls = ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_restarts=0)(TrialWorker)
        self._tickets = itertools.count()
        self._queue: deque[tuple[int, Trial, int]] = deque()  # (ticket, trial, attempt)
        self._running: dict[Any, tuple[Any, int, Trial, int]] = {}  # ref -> (actor, ticket, trial, attempt)
        self._idle: deque = deque(self._actor_cls.remote(factory) for _ in range(self.capacity))
        try:
            self.pids = ray.get([actor.pid.remote() for actor in self._idle])
        except _WORKER_LOST as exc:
            self.close()
            raise ConfigError(f"executor: a Ray worker could not build the fitness: {_first_line(exc)}") from None

    def submit(self, trial: Trial) -> int:
        ticket = next(self._tickets)
        self._queue.append((ticket, trial, 0))
        self._dispatch()
        return ticket

    def wait(self) -> tuple[int, TrialResult]:
        while True:
            if not self._running:
                raise RuntimeError("wait() with no trial submitted")
            (ref,), _ = ray.wait(list(self._running), num_returns=1)
            actor, ticket, trial, attempt = self._running.pop(ref)
            try:
                result = ray.get(ref)
            except _WORKER_LOST as exc:
                self._replace(actor)
                if attempt < self.max_retries:
                    log.warning("trial %s: its Ray worker died (%s); retrying", trial.trial_id, _first_line(exc))
                    self._queue.appendleft((ticket, trial, attempt + 1))
                    self._dispatch()
                    continue
                result = TrialResult.failed(
                    FailureReason.KILLED,
                    f"the Ray worker died {attempt + 1} times running this trial; last: {_first_line(exc)}",
                )
            except RayTaskError as exc:  # BaseException out of the fitness (SystemExit, ...)
                self._idle.append(actor)
                result = TrialResult.failed(FailureReason.EXCEPTION, _first_line(exc))
            else:
                self._idle.append(actor)
            self._dispatch()
            if attempt:
                result = dataclasses.replace(result, metrics={**result.metrics, "retries": attempt})
            return ticket, result

    def close(self) -> None:
        for actor in [*self._idle, *(entry[0] for entry in self._running.values())]:
            ray.kill(actor, no_restart=True)
        self._idle.clear()
        self._running.clear()
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()

    # -----------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        while self._queue and self._idle:
            ticket, trial, attempt = self._queue.popleft()
            actor = self._idle.popleft()
            self._running[actor.evaluate.remote(trial)] = (actor, ticket, trial, attempt)

    def _replace(self, actor: Any) -> None:
        """A dead actor's slot gets a fresh actor (a fresh fitness); Ray schedules it
        wherever resources are free, so a lost node's slots move to the others."""
        ray.kill(actor, no_restart=True)
        self._idle.append(self._actor_cls.remote(self._factory))


def _fitting(resources: dict[str, float], cpus: float, gpus: float) -> int:
    """How many actors the cluster holds: one per GPU share, else one per CPU share."""
    if gpus > 0:
        count = math.floor(resources.get("GPU", 0) / gpus + 1e-9)
        need = f"{gpus} GPU"
    else:
        count = math.floor(resources.get("CPU", 0) / cpus + 1e-9) if cpus > 0 else 1
        need = f"{cpus} CPU"
    if count < 1:
        raise ConfigError(f"executor: the Ray cluster has no room for one trial ({need} each; it has {resources})")
    return count


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
