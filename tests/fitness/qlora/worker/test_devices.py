"""The QLoRA fitness on several devices: each worker subprocess is pinned to its label.

No GPU needed: labels such as ``a`` and ``b`` go into ``CUDA_VISIBLE_DEVICES`` as ``0`` and
``1`` would, and the worker reports the value it saw in each trial's metrics.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from evo.config import parse_config
from evo.executors._devices import DeviceExecutor
from evo.run import start_run
from evo.storage import RunStore
from evo.trial import Budget, FailureReason, Trial
from fitness.qlora import QLoRAFitness
from fitness.qlora.worker import devices
from tests.conftest import SMALL_SPACE

QUICK = Budget(steps=2)


def quick(trial_id, **config):
    return Trial(trial_id, {"r": 4, **config}, QUICK, seed=trial_id)


@pytest.fixture(scope="module")
def two_devices(shared_fitness):
    """Two workers, pinned to ``a`` and ``b``, for every test here (each start costs seconds)."""
    executor = DeviceExecutor(shared_fitness, ["a", "b"])
    yield executor
    executor.close()


def answer_all(executor, trials):
    tickets = {executor.submit(trial): trial.trial_id for trial in trials}
    return {tickets[ticket]: result for ticket, result in (executor.wait() for _ in trials)}


def test_each_worker_sees_only_its_own_device(two_devices, shared_fitness):
    results = answer_all(two_devices, [quick(0), quick(1)])  # one per idle device: each CPU worker takes one
    assert {r.metrics["device_label"] for r in results.values()} == {"a", "b"}
    for result in results.values():
        assert result.ok, result.message
        assert result.metrics["cuda_visible_devices"] == result.metrics["device_label"]
    pids = {label: fitness.worker_pid for label, fitness in two_devices.fitnesses.items()}
    assert None not in pids.values() and len(set(pids.values())) == 2 and shared_fitness.worker_pid not in pids.values()
    unpinned = shared_fitness.evaluate(quick(0))  # the same trial on the driver's own worker
    assert dict(unpinned.values) == dict(results[0].values)
    assert unpinned.metrics["cuda_visible_devices"] == os.environ.get("CUDA_VISIBLE_DEVICES")


@pytest.mark.slow  # tens of seconds: run with -m slow
def test_a_worker_that_dies_is_replaced_on_its_own_device(two_devices):
    answer_all(two_devices, [quick(10), quick(11)])  # both workers up
    victim = two_devices.fitnesses["b"].worker_pid
    endless = Trial(13, {"r": 4}, Budget(steps=10**7), seed=13)
    tickets = {two_devices.submit(quick(12)): "quick", two_devices.submit(endless): "endless"}  # a: 12, b: 13
    ticket, first = two_devices.wait()
    assert tickets[ticket] == "quick" and first.ok and first.metrics["device_label"] == "a"
    time.sleep(1.5)  # b is training the endless trial
    os.kill(victim, signal.SIGKILL)
    ticket, killed = two_devices.wait()
    assert tickets[ticket] == "endless" and killed.reason is FailureReason.KILLED, killed.message
    assert "SIGKILL" in killed.message and killed.metrics["device_label"] == "b"
    after = answer_all(two_devices, [quick(14), quick(15)])
    on_b = next(r for r in after.values() if r.metrics["device_label"] == "b")
    assert on_b.ok and on_b.metrics["cuda_visible_devices"] == "b"
    assert on_b.metrics["worker_pid"] == two_devices.fitnesses["b"].worker_pid != victim


def test_a_run_on_two_devices_is_complete(tiny_spec, shared_fitness, two_devices, tmp_path):
    config = parse_config(
        {
            "seed": 5,
            "fitness": tiny_spec,
            "budget": {"steps": 2},
            "evolution": {"mode": "generational", "population_size": 4, "generations": 1},
            "search_space": {"r": SMALL_SPACE["r"], "lora_dropout": SMALL_SPACE["lora_dropout"]},
            "executor": {"devices": ["a", "b"]},
        }
    )
    result = start_run(config, shared_fitness, tmp_path / "run", executor=two_devices)
    with RunStore.open(tmp_path / "run") as store:
        trials = store.trials()
        assert store.finished_generations() == [0, 1]
        assert all(i.trial_id is not None for i in store.individuals())
    assert len(trials) == result.evaluations == 8 and all(t.ok for t in trials), [t.message for t in trials]
    assert {t.metrics["device_label"] for t in trials} == {"a", "b"}
    assert all(t.metrics["cuda_visible_devices"] == t.metrics["device_label"] for t in trials)


def test_closing_while_a_trial_runs_stops_its_worker_at_once(shared_fitness):
    """A run that ends (aborted, interrupted) with trials in flight abandons them: no waiting
    30 s per device for a worker that is busy and cannot read a stop."""
    executor = DeviceExecutor(shared_fitness, ["c"])
    executor.submit(Trial(20, {"r": 4}, Budget(steps=10**7), seed=20))
    outcome: list = []

    def driver():  # blocked on the trial; once closed, its wait answers nothing
        try:
            outcome.append(executor.wait())
        except Exception as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=driver, daemon=True)
    waiter.start()
    deadline = time.monotonic() + 120
    while executor.fitnesses["c"].worker_pid is None and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = executor.fitnesses["c"].worker_pid
    assert pid is not None
    time.sleep(1.0)
    started = time.monotonic()
    executor.close()
    assert time.monotonic() - started < 10
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    waiter.join(timeout=30)
    assert outcome and not isinstance(outcome[0], tuple)  # the trial was abandoned, not answered


def test_the_visible_devices_are_what_cuda_visible_devices_names(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert devices.visible_cuda_devices() == ("0", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, GPU-3f2a")  # the machine's labels, not 0 and 1
    assert devices.visible_cuda_devices() == ("2", "GPU-3f2a")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # CUDA stopped at the second entry
    assert devices.visible_cuda_devices() == ("2",)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert devices.visible_cuda_devices() == ()


def test_a_cpu_fitness_has_no_device_to_pin(shared_fitness):
    assert shared_fitness.visible_devices() == ()  # tiny_spec trains on the CPU


@pytest.mark.gpu
def test_auto_runs_one_worker_per_visible_gpu(tiny_spec):
    from evo.config import ExecutorSettings
    from evo.executors import make_executor

    fitness = QLoRAFitness.from_spec({**tiny_spec, "device": "cuda"})
    labels = fitness.visible_devices()
    executor = make_executor(ExecutorSettings(), fitness)
    try:
        trials = [quick(i) for i in range(2 * len(labels))]
        results = answer_all(executor, trials).values()
        assert all(r.ok and r.metrics["device"] == "cuda" for r in results), [r.message for r in results]
        if len(labels) > 1:
            assert {r.metrics["device_label"] for r in results} == set(labels)
        assert all(r.metrics["cuda_visible_devices"] == r.metrics["device_label"] for r in results)
    finally:
        executor.close()
        fitness.close()
