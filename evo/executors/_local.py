"""Trials in the driver process: one after another, or on a few threads.

One worker (the default) calls the fitness right in :meth:`LocalExecutor.wait`, exactly
as the loop always did, so Ctrl-C and signals reach the fitness as before. More workers
share the one fitness object across threads: only for fitnesses that are thread-safe
and mostly wait (a sleeping synthetic fitness, a remote service). The QLoRA fitness
needs the ``ray`` executor to run trials in parallel.
"""

from __future__ import annotations

import concurrent.futures as futures
import itertools
from collections import deque

from evo.executors import run_trial
from evo.trial import Fitness, Trial, TrialResult


class LocalExecutor:
    def __init__(self, fitness: Fitness, *, workers: int = 1):
        self.fitness = fitness
        self.capacity = workers
        self._tickets = itertools.count()
        self._queued: deque[tuple[int, Trial]] = deque()  # one worker: run when waited for
        self._pool = futures.ThreadPoolExecutor(workers, thread_name_prefix="evo-trial") if workers > 1 else None
        self._running: dict[futures.Future, int] = {}

    def submit(self, trial: Trial) -> int:
        ticket = next(self._tickets)
        if self._pool is None:
            self._queued.append((ticket, trial))
        else:
            self._running[self._pool.submit(run_trial, self.fitness, trial)] = ticket
        return ticket

    def wait(self) -> tuple[int, TrialResult]:
        if self._queued:
            ticket, trial = self._queued.popleft()
            return ticket, run_trial(self.fitness, trial)
        if not self._running:
            raise RuntimeError("wait() with no trial submitted")
        done, _ = futures.wait(self._running, return_when=futures.FIRST_COMPLETED)
        future = min(done, key=lambda f: self._running[f])  # several may be done: answer the oldest first
        return self._running.pop(future), future.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
