"""Trials run in a persistent worker subprocess, supervised from the driver. No torch here.

The worker (spawned, talks over a Pipe) keeps the 4-bit base and the tokenized data
resident across trials. The supervisor turns what a dead or stuck worker can't
report into results: a death is KILLED, a trial past ``trial_timeout`` is TIMEOUT
(the worker is killed). The worker is replaced when it died, timed out, or its RSS
grew past ``max_worker_rss_growth_mb`` (a leak), and the next trial proceeds. A worker
built for a ``device`` sets ``CUDA_VISIBLE_DEVICES`` to it before anything loads torch,
so it sees that one GPU as cuda:0, and so does every worker that replaces it.

Two clocks bound a worker, each a key of the fitness: ``startup_timeout`` its start (the
imports, the model loaded or converted into the cache, the data tokenized), after which
the trials it was to run fail; ``trial_timeout`` each trial, from the moment the started
worker takes it. A trial that started a worker records how long the start took
(``metrics["worker_start_seconds"]``): its wall time in the store includes it.

A worker dies with its driver (``lifeline.py``), so it is started from a thread of this
supervisor's own, and a driver that stops while trials are in flight kills it at once.
"""

from __future__ import annotations

import concurrent.futures as futures
import logging
import multiprocessing
import os
import signal
import time
import warnings
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

from evo.trial import FailureReason, Trial, TrialResult
from fitness.qlora.memory.process import release_freed_memory, rss_mb
from fitness.qlora.worker.lifeline import die_with_parent, leave_stopping_to_the_driver
from fitness.qlora.worker.settings import WorkerSettings

# bitsandbytes logs this on every CPU start with AVX512-BF16 when the optional hub kernel
# (the `kernels` package) is missing; it then uses its own kernel, so nothing is wrong.
_KERNELS_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"
_KERNELS_NOTICE_LOGGER = "bitsandbytes.backends.cpu.ops"


def _not_the_kernels_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(_KERNELS_NOTICE)


def _main(conn: Connection, settings: WorkerSettings, device: str | None, driver_pid: int) -> None:
    """The worker process: tied to its driver's life before anything else, then serving it."""
    die_with_parent(driver_pid)
    leave_stopping_to_the_driver()
    _serve(conn, settings, device)


def _serve(conn: Connection, settings: WorkerSettings, device: str | None = None) -> None:
    """Worker process entry: set up once, then answer ("trials", [Trial, ...]) until ("stop",) or EOF.

    It first sends ("ready", rss, the CUDA_VISIBLE_DEVICES it saw); then each trial's result
    as ("result", index, TrialResult) as soon as it ends, and ("done", rss) once all of them
    are answered.
    """
    if device is not None:  # before the runner imports torch: CUDA reads it once, when it starts
        os.environ["CUDA_VISIBLE_DEVICES"] = device
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # peft calls a transformers property deprecated in v5 on every attach: noise, once per trial
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    logging.getLogger(_KERNELS_NOTICE_LOGGER).addFilter(_not_the_kernels_notice)  # before bitsandbytes loads
    try:
        from fitness.qlora.worker.runner import TrialRunner

        runner = TrialRunner(settings)
    except Exception as exc:  # reported to the driver, which fails the trial with it
        conn.send(("startup_failed", f"{type(exc).__name__}: {exc}".splitlines()[0][:500]))
        return
    release_freed_memory()
    try:
        conn.send(("ready", rss_mb(), os.environ.get("CUDA_VISIBLE_DEVICES")))
        _answer_until_stopped(conn, runner)
    except (EOFError, BrokenPipeError, ConnectionResetError):  # the driver went away: nobody to answer
        return


def _answer_until_stopped(conn: Connection, runner) -> None:
    while True:
        message = conn.recv()
        if message[0] == "stop":
            return
        runner.run_cohort(message[1], lambda index, result: conn.send(("result", index, result)))
        release_freed_memory()
        conn.send(("done", rss_mb()))


class WorkerSupervisor:
    """One worker process at a time; ``evaluate_batch`` never raises for trial-level failures.

    A batch is one message: the worker cohorts what it can. While it runs, each result is
    awaited at most ``trial_timeout`` times the trials still unanswered (they may all be
    training side by side); a worker that dies or times out fails only those.
    """

    def __init__(self, settings: WorkerSettings, *, device: str | None = None) -> None:
        self.settings = settings
        self.device = device  # CUDA_VISIBLE_DEVICES of every worker process it starts (None: inherited)
        self._waiting = False  # a thread is blocked on the worker's answer
        self._in_flight = False  # the worker holds trials it has not answered (abandoned if we stop now)
        self._context = multiprocessing.get_context("spawn")  # fork would copy CUDA/OpenMP state
        self._launcher: futures.ThreadPoolExecutor | None = None  # the thread every worker is started from
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._ready_rss_mb = 0.0
        self._seen_devices: str | None = None  # the CUDA_VISIBLE_DEVICES the worker reported when ready
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def evaluate_batch(self, trials: list[Trial]) -> list[TrialResult]:
        if self._process is not None and not self._process.is_alive():
            self._kill()  # died between trials (killed while idle): just start another
        started: dict[str, float] = {}  # the start's seconds, on the results of the trials that waited for it
        if self._process is None:
            clock = time.monotonic()
            failure = self._start()
            if failure is not None:
                return [failure] * len(trials)
            started["worker_start_seconds"] = round(time.monotonic() - clock, 3)
        assert self._conn is not None
        try:
            self._conn.send(("trials", list(trials)))
        except OSError:
            return [TrialResult.failed(FailureReason.KILLED, self._death_message("before the trial started"))] * len(
                trials
            )
        self._in_flight = True
        results: dict[int, TrialResult] = {}
        pid = self.pid
        while True:
            answer = self._receive(self.settings.trial_timeout * max(1, len(trials) - len(results)))
            if answer is None or answer == "died":
                failure = self._lost(answer is None, len(trials))
                return [results.get(i, failure) for i in range(len(trials))]
            if answer[0] == "result":
                results[answer[1]] = answer[2]
                continue
            self._in_flight = False
            worker_rss = answer[1]  # "done": every trial answered
            if worker_rss - self._ready_rss_mb > self.settings.max_worker_rss_growth_mb:
                self.close()  # leaked: the next trial gets a fresh worker
            seen = self._seen_devices
            return [
                _with_metrics(
                    results[i], worker_pid=pid, worker_rss_mb=worker_rss, cuda_visible_devices=seen, **started
                )
                for i in range(len(trials))
            ]

    def _lost(self, timed_out: bool, trials: int) -> TrialResult:
        """What the trials still unanswered get when the worker timed out (it is killed) or died."""
        if timed_out:
            self._kill()
            cohort = f" (with {trials} trials in its cohort)" if trials > 1 else ""
            return TrialResult.failed(
                FailureReason.TIMEOUT,
                f"trial exceeded trial_timeout={self.settings.trial_timeout:g}s{cohort}; worker killed",
            )
        return TrialResult.failed(FailureReason.KILLED, self._death_message("during the trial"))

    def close(self) -> None:
        """Stop the worker: asked to stop when idle, killed at once when trials are in flight
        (a driver stopping mid-trial, or another thread waiting on an abandoned trial)."""
        if self._process is None:
            return
        if self._waiting or self._in_flight:
            self._kill()
            return
        try:
            assert self._conn is not None
            self._conn.send(("stop",))
            self._process.join(timeout=30)
        except (OSError, ValueError):
            pass
        self._kill()

    def _start(self) -> TrialResult | None:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_main,
            args=(child, self.settings, self.device, os.getpid()),
            name="qlora-worker",
            daemon=True,
        )
        try:
            self._launch(process)  # raises e.g. from a script without a __main__ guard (spawn re-imports it)
        except BaseException:
            parent.close()
            child.close()
            raise
        self._process = process  # only a started process: close() and _kill() can handle it
        child.close()  # so a dead worker shows up as EOF on our end
        self._conn = parent
        self.starts += 1
        answer = self._receive(self.settings.startup_timeout)
        if answer is None or answer == "died" or answer[0] == "startup_failed":
            if answer is None:
                message = f"worker did not start within startup_timeout={self.settings.startup_timeout:g}s"
            elif answer == "died":
                message = self._death_message("while starting")
            else:
                message = f"worker failed to start: {answer[1]}"
            self._kill()
            reason = FailureReason.KILLED if answer == "died" else FailureReason.EXCEPTION
            return TrialResult.failed(reason, message)
        self._ready_rss_mb, self._seen_devices = answer[1], answer[2]
        return None

    def _launch(self, process: multiprocessing.process.BaseProcess) -> None:
        """``process.start()`` on this supervisor's own thread: Linux kills a worker when the thread
        that started it ends (see ``lifeline.py``), and the thread evaluating may be a short-lived one."""
        if self._launcher is None:
            self._launcher = futures.ThreadPoolExecutor(1, thread_name_prefix="qlora-worker-launcher")
        launched = self._launcher.submit(process.start)
        try:
            launched.result()
        except BaseException:
            futures.wait([launched])
            if launched.exception() is None:  # interrupted while it started: not left running
                process.kill()
                process.join(timeout=10)
            raise

    def _receive(self, timeout: float) -> Any:
        """The next message, "died" if the worker's end closed, None on timeout."""
        assert self._conn is not None
        self._waiting = True
        try:
            if not self._conn.poll(timeout):
                return None
            return self._conn.recv()
        except (EOFError, OSError):
            return "died"
        finally:
            self._waiting = False

    def _death_message(self, when: str) -> str:
        assert self._process is not None
        self._process.join(timeout=10)
        code = self._process.exitcode
        self._kill()
        if code is not None and code < 0:
            return f"worker died {when} (signal {signal.Signals(-code).name})"
        return f"worker died {when} (exit code {code})"

    def _kill(self) -> None:
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(timeout=10)
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn, self._in_flight = None, None, False


def _with_metrics(result: TrialResult, **extra: Any) -> TrialResult:
    return replace(result, metrics={**result.metrics, **extra})
