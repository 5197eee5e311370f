"""Failures injected for real into the worker: an allocation past its memory cap, a SIGKILL, a hang."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from evo.trial import Budget, FailureReason, Trial, TrialStatus
from fitness.qlora import QLoRAFitness

FOREVER = Budget(steps=10**7)


@pytest.fixture(scope="module")
def fragile_fitness(tiny_spec):
    """A worker with a short timeout and a 256 MB cap on what one trial may allocate."""
    fitness = QLoRAFitness.from_spec({**tiny_spec, "trial_timeout": 5, "trial_memory_limit_mb": 256})
    yield fitness
    fitness.close()


def quick(fitness, trial_id=0):
    return fitness.evaluate(Trial(trial_id, {"r": 4}, Budget(steps=2), seed=1))


def test_allocation_past_the_cap_is_oom_and_the_worker_survives(fragile_fitness):
    assert quick(fragile_fitness).ok
    pid = fragile_fitness.worker_pid
    # an adapter of rank 200,000 on every module: 1.6 GB of weights, past the cap even at one row (a
    # batch past it alone would train in smaller micro-batches: memory/test_planner.py)
    huge = {"per_device_train_batch_size": 1, "r": 200_000, "target_modules": "all-linear"}
    result = fragile_fitness.evaluate(Trial(1, huge, Budget(steps=1), seed=1))
    assert result.status is TrialStatus.FAILED and result.reason is FailureReason.OOM, result.message
    assert "allocate" in result.message
    assert quick(fragile_fitness).ok and fragile_fitness.worker_pid == pid  # same worker, base intact


@pytest.mark.slow  # tens of seconds: run with -m slow
def test_killed_worker_is_killed_trial_and_is_replaced(fragile_fitness):
    assert quick(fragile_fitness).ok
    victim = fragile_fitness.worker_pid
    results = []
    runner = threading.Thread(target=lambda: results.append(fragile_fitness.evaluate(Trial(2, {}, FOREVER, seed=1))))
    runner.start()
    time.sleep(1.5)  # mid-trial
    os.kill(victim, signal.SIGKILL)
    runner.join(timeout=30)
    assert results and results[0].reason is FailureReason.KILLED and "SIGKILL" in results[0].message
    after = quick(fragile_fitness)
    assert after.ok and fragile_fitness.worker_pid != victim


def test_trial_past_the_timeout_is_killed_and_the_next_one_runs(fragile_fitness):
    assert quick(fragile_fitness).ok
    stuck = fragile_fitness.worker_pid
    start = time.monotonic()
    result = fragile_fitness.evaluate(Trial(3, {}, FOREVER, seed=1))
    assert result.reason is FailureReason.TIMEOUT and "trial_timeout=5s" in result.message
    assert 5 <= time.monotonic() - start < 30
    with pytest.raises(ProcessLookupError):
        os.kill(stuck, 0)  # gone
    replaced = quick(fragile_fitness)  # its own clock: the new worker's start is not part of it
    assert replaced.ok and replaced.metrics["worker_start_seconds"] > 0
    assert "worker_start_seconds" not in quick(fragile_fitness).metrics  # only on what waited for a start


@pytest.mark.slow  # tens of seconds: run with -m slow
def test_worker_killed_between_trials_is_replaced(fragile_fitness):
    assert quick(fragile_fitness).ok
    idle = fragile_fitness.worker_pid
    os.kill(idle, signal.SIGKILL)
    time.sleep(0.5)
    after = quick(fragile_fitness)
    assert after.ok and fragile_fitness.worker_pid != idle


@pytest.mark.slow  # tens of seconds: run with -m slow
def test_leaking_worker_is_replaced(tiny_spec):
    with QLoRAFitness.from_spec({**tiny_spec, "max_worker_rss_growth_mb": 1}) as fitness:
        # any trial grows RSS by more than 1 MB (peft, optimizer, autograd buffers), which counts as a leak
        first = quick(fitness)
        pid = first.metrics["worker_pid"]
        assert first.ok and fitness.worker_pid is None  # stopped after answering
        second = quick(fitness, trial_id=1)
        assert second.ok and second.metrics["worker_pid"] != pid
        assert first.values == second.values
        replaced = second.metrics["worker_pid"]
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(replaced, 0)  # close() stopped it too


def test_a_worker_that_cannot_start_fails_the_call_and_still_closes(tiny_spec, monkeypatch):
    fitness = QLoRAFitness.from_spec(tiny_spec)

    class Unstartable:
        def __init__(self, **kwargs):
            pass

        def start(self):
            raise RuntimeError("An attempt has been made to start a new process before bootstrapping")

    monkeypatch.setattr(fitness._worker._context, "Process", Unstartable)
    with pytest.raises(RuntimeError, match="bootstrapping"):
        quick(fitness)
    assert fitness.worker_pid is None
    fitness.close()  # nothing to stop, nothing raised


def test_a_worker_past_its_startup_timeout_fails_the_trial_naming_the_key(tiny_spec):
    """Start-up has its own clock (the imports alone take longer than 0.05 s): the trial fails
    at once, the worker is killed, and the next call tries again."""
    with QLoRAFitness.from_spec({**tiny_spec, "startup_timeout": 0.05}) as fitness:
        for trial_id in (0, 1):
            result = quick(fitness, trial_id)
            assert result.reason is FailureReason.EXCEPTION and fitness.worker_pid is None
            assert result.message == "worker did not start within startup_timeout=0.05s"
        assert fitness._worker.starts == 2


KERNELS_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"


def test_the_worker_drops_only_the_kernels_notice_of_bitsandbytes(caplog):
    from fitness.qlora.worker.supervisor import _KERNELS_NOTICE_LOGGER, _not_the_kernels_notice

    logger = logging.getLogger(_KERNELS_NOTICE_LOGGER)
    logger.addFilter(_not_the_kernels_notice)
    try:
        with caplog.at_level(logging.WARNING, logger=_KERNELS_NOTICE_LOGGER):
            missing = ModuleNotFoundError("No module named 'kernels'")
            logger.warning(KERNELS_NOTICE + ": %s. Please make sure you already `pip install kernels`", missing)
            logger.warning("Failed to load CPU gemm_4bit_forward: something else")
    finally:
        logger.removeFilter(_not_the_kernels_notice)
    assert [r.getMessage() for r in caplog.records] == ["Failed to load CPU gemm_4bit_forward: something else"]


TRIAL_SCRIPT = """
import sys
from evo.trial import Budget, Trial
from fitness.qlora import QLoRAFitness

if __name__ == "__main__":
    with QLoRAFitness.from_spec({spec!r}) as fitness:
        result = fitness.evaluate(Trial(0, {{"r": 4, "max_seq_length": 32}}, Budget(steps=1), seed=0))
    assert result.ok, result.message
"""


@pytest.mark.slow  # two processes importing bitsandbytes, and a worker (~15 s)
def test_a_trial_prints_no_kernels_notice(tiny_spec, tmp_path):
    root = Path(__file__).resolve().parents[4]
    bare = subprocess.run([sys.executable, "-c", "import bitsandbytes"], capture_output=True, text=True)
    if KERNELS_NOTICE not in bare.stderr:
        pytest.skip("bitsandbytes has no kernels notice on this CPU (no AVX512-BF16) or this version")
    script = tmp_path / "one_trial.py"
    script.write_text(TRIAL_SCRIPT.format(spec=tiny_spec))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=root, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "kernels" not in done.stderr, done.stderr


def test_a_worker_whose_driver_went_away_returns_quietly(monkeypatch):
    """The driver killed mid-trial: the worker's next send finds a broken pipe and it ends, no traceback."""
    import fitness.qlora.worker.runner
    from fitness.qlora.worker import supervisor as worker

    class Runner:
        def __init__(self, spec):
            pass

        def run_cohort(self, trials, send):
            send(0, "a result")

    class DriverGone:
        def __init__(self):
            self.sent = []

        def recv(self):
            return ("trials", ["a trial"])

        def send(self, message):
            self.sent.append(message)
            if message[0] == "result":
                raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(fitness.qlora.worker.runner, "TrialRunner", Runner)
    conn = DriverGone()
    worker._serve(conn, {})  # returns instead of raising
    assert [m[0] for m in conn.sent] == ["ready", "result"]
