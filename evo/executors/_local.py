"""Trials in the driver process: one after another, a batch at a time, or on a few threads.

One worker (the default) calls the fitness right in :meth:`LocalExecutor.wait`, exactly
as the loop always did, so Ctrl-C and signals reach the fitness as before. A fitness
whose ``batch_capacity`` is above 1 (a cohort of QLoRA trials on one base) gets that capacity:
submitted trials queue, and a ``wait`` with no answer ready hands every queued trial to
``evaluate_batch`` at once; the answers then come back one per ``wait``, in submission
order, so the order never depends on timing. More workers share the one fitness object
across threads: only for fitnesses that are thread-safe and mostly wait (a sleeping
synthetic fitness, a remote service). With one ``device``, the executor runs
``fitness.for_device(device)`` (closing it at the end) and labels each result with it;
several devices are :mod:`evo.executors._devices`'s.
"""

from __future__ import annotations

import concurrent.futures as futures
import itertools
from collections import deque

from evo.executors import labelled, run_batch
from evo.trial import Fitness, Trial, TrialResult


class LocalExecutor:
    def __init__(self, fitness: Fitness, *, workers: int = 1, device: str | None = None):
        self.device = device
        self.fitness = fitness if device is None else fitness.for_device(device)
        self._owns_fitness = self.fitness is not fitness
        self.capacity = workers if workers > 1 else max(1, self.fitness.batch_capacity)
        self._tickets = itertools.count()
        self._queued: deque[tuple[int, Trial]] = deque()  # one worker: run when waited for
        self._answered: deque[tuple[int, TrialResult]] = deque()  # a batch's answers not handed out yet
        self._pool = futures.ThreadPoolExecutor(workers, thread_name_prefix="evo-trial") if workers > 1 else None
        self._running: dict[futures.Future, int] = {}

    def submit(self, trial: Trial) -> int:
        ticket = next(self._tickets)
        if self._pool is None:
            self._queued.append((ticket, trial))
        else:
            self._running[self._pool.submit(run_batch, self.fitness, [trial])] = ticket
        return ticket

    def wait(self) -> tuple[int, TrialResult]:
        if self._answered:
            return self._answered.popleft()
        if self._queued:
            batch = [self._queued.popleft() for _ in range(min(self.capacity, len(self._queued)))]
            results = run_batch(self.fitness, [trial for _, trial in batch])
            if self.device is not None:
                results = [labelled(result, self.device) for result in results]
            self._answered.extend((ticket, result) for (ticket, _), result in zip(batch, results))
            return self._answered.popleft()
        if not self._running:
            raise RuntimeError("wait() with no trial submitted")
        done, _ = futures.wait(self._running, return_when=futures.FIRST_COMPLETED)
        future = min(done, key=lambda f: self._running[f])  # several may be done: answer the oldest first
        result = future.result()[0]
        return self._running.pop(future), result if self.device is None else labelled(result, self.device)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._owns_fitness:
            self.fitness.close()
