"""Several devices on one machine (``executor.devices``): one worker per device, side by side.

Device labels need no GPU: on this machine ``devices: [a, b]`` schedules and pins exactly as
``[0, 1]`` does on a GPU box (the QLoRA worker's side is in tests/fitness/qlora/worker/test_devices.py).
"""

from __future__ import annotations

import argparse
import io
import threading
import time

import pytest

from evo.cli import main
from evo.cli._run_commands import _moved
from evo.config import ExecutorSettings, ExecutorType, parse_config
from evo.executors import make_executor
from evo.executors._devices import DeviceExecutor
from evo.executors._local import LocalExecutor
from evo.reporting import TerminalProgress
from evo.run import start_run
from evo.storage import RunStore
from evo.trial import ConfigError, FailureReason, TrialResult
from fitness.synthetic import SyntheticFitness
from tests.evo.executors.test_executors import trials_of
from tests.evo.executors.test_local_batches import Batching, space, trial
from tests.evo.fitnesses import Sphere


class Pinned(Batching):
    """Batching (two trials at once) with one copy per device; the copies share a ledger of
    what ran where and how many trials were in flight together, and each answer says which
    copy gave it."""

    batch_capacity = 2

    def __init__(self, sp, label=None, ledger=None, seconds=0.0):
        super().__init__(sp)
        self.label, self.seconds, self.closed = label, seconds, 0
        self.ledger = ledger if ledger is not None else {"lock": threading.Lock(), "now": 0, "most": 0, "ran": []}

    def visible_devices(self):
        return ("x", "y")

    def for_device(self, label):
        return type(self)(self.space, label, self.ledger, self.seconds)

    def evaluate_batch(self, trials):
        with self.ledger["lock"]:
            self.ledger["now"] += len(trials)
            self.ledger["most"] = max(self.ledger["most"], self.ledger["now"])
            self.ledger["ran"].append((self.label, len(trials)))
        time.sleep(self.seconds)
        values = [Sphere.evaluate(self, t).values for t in trials]
        with self.ledger["lock"]:
            self.ledger["now"] -= len(trials)
        return [TrialResult.complete(v, metrics={"pinned": self.label}) for v in values]

    def evaluate(self, trial):  # a batch of one goes through evaluate
        return self.evaluate_batch([trial])[0]

    def close(self):
        self.closed += 1


class RaisesOnB(Pinned):
    def evaluate_batch(self, trials):
        if self.label == "b":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return super().evaluate_batch(trials)


def test_each_device_takes_a_cohort_and_answers_carry_its_label():
    sp = space()
    shared = Pinned(sp)
    executor = DeviceExecutor(shared, ["a", "b"])
    assert executor.capacity == 4 and set(executor.fitnesses) == {"a", "b"}
    trials = [trial(i, sp) for i in range(4)]
    tickets = [executor.submit(t) for t in trials]
    answers = dict(executor.wait() for _ in range(4))
    assert sorted(answers) == tickets
    for ticket, t in zip(tickets, trials):  # each ticket answered with its own trial's result
        assert answers[ticket].values == Sphere(sp).evaluate(t).values
    assert sorted(shared.ledger["ran"]) == [("a", 2), ("b", 2)]
    assert all(r.ok and r.metrics["device_label"] == r.metrics["pinned"] for r in answers.values())
    assert {r.metrics["device_label"] for r in answers.values()} == {"a", "b"}
    executor.close()


def test_the_queue_is_split_evenly_over_the_idle_devices():
    sp = space()
    shared = Pinned(sp)
    executor = DeviceExecutor(shared, ["a", "b", "c"])
    for i in range(4):
        executor.submit(trial(i, sp))
    answers = [executor.wait() for _ in range(4)]
    assert sorted(n for _, n in shared.ledger["ran"]) == [1, 1, 2]  # not 2, 2 and c idle
    assert len({ticket for ticket, _ in answers}) == 4
    with pytest.raises(RuntimeError, match="no trial submitted"):
        executor.wait()


def test_closing_closes_each_device_fitness_but_not_the_drivers():
    sp = space()
    shared = Pinned(sp)
    executor = DeviceExecutor(shared, ["a", "b"])
    own = list(executor.fitnesses.values())
    executor.close()
    assert [f.closed for f in own] == [1, 1] and shared.closed == 0
    sphere = Sphere(sp)  # FitnessBase.for_device: the fitness itself, shared by both threads
    executor = DeviceExecutor(sphere, ["a", "b"])
    for i in range(6):
        executor.submit(trial(i, sp))
    labels = [executor.wait()[1].metrics["device_label"] for _ in range(6)]
    assert set(labels) <= {"a", "b"} and len(sphere.calls) == 6
    executor.close()


def test_a_failing_device_fails_only_its_own_trials():
    sp = space()
    executor = DeviceExecutor(RaisesOnB(sp), ["a", "b"])
    for i in range(4):
        executor.submit(trial(i, sp))
    results = [executor.wait()[1] for _ in range(4)]
    by_label = {label: [r for r in results if r.metrics.get("device_label") == label] for label in "ab"}
    assert len(by_label["a"]) == 2 and all(r.ok for r in by_label["a"])
    assert len(by_label["b"]) == 2 and all(r.reason is FailureReason.EXCEPTION for r in by_label["b"])


def test_make_executor_resolves_auto_by_asking_the_fitness():
    sp = space()
    auto = make_executor(ExecutorSettings(), Pinned(sp))  # it sees x and y
    assert isinstance(auto, DeviceExecutor) and set(auto.fitnesses) == {"x", "y"}
    none = make_executor(ExecutorSettings(), Sphere(sp))  # it sees none: one worker, on itself
    assert isinstance(none, LocalExecutor) and none.device is None and none.capacity == 1
    threads = make_executor(ExecutorSettings(workers=3), Pinned(sp))  # threads on the one fitness
    assert isinstance(threads, LocalExecutor) and threads.device is None and threads.capacity == 3
    one = make_executor(ExecutorSettings(devices=(7,)), Pinned(sp))
    assert isinstance(one, LocalExecutor) and one.device == "7" and one.fitness.label == "7"
    one.submit(trial(0, sp))
    assert one.wait()[1].metrics == {"pinned": "7", "device_label": "7"}
    one.close()
    assert one.fitness.closed == 1


def run(config, run_dir, executor, observers=()):
    cfg = parse_config({**config, "executor": executor})
    return start_run(cfg, SyntheticFitness.from_spec(cfg.fitness), run_dir, observers=observers)


def trials_by_device(run_dir):
    with RunStore.open(run_dir) as store:
        return [(t.metrics.get("device_label"), t.metrics.get("pinned_device")) for t in store.trials() if t.ok]


def test_a_generational_run_on_two_devices_is_the_one_worker_run(synthetic_config, tmp_path):
    synthetic_config["fitness"].update(seconds_per_trial=0.01, duration_spread=1.0)  # out-of-order finishes
    synthetic_config["evolution"]["mode"] = "generational"
    run(synthetic_config, tmp_path / "one", {})
    run(synthetic_config, tmp_path / "two", {"devices": ["a", "b"]})
    assert trials_of(tmp_path / "two") == trials_of(tmp_path / "one")
    ran = trials_by_device(tmp_path / "two")
    assert all(label == pinned for label, pinned in ran)  # each trial ran on the copy of its device
    assert {label for label, _ in ran} == {"a", "b"}
    assert {label for label, _ in trials_by_device(tmp_path / "one")} == {None}  # no device: nothing to label


def test_steady_state_keeps_every_device_busy(tmp_path):
    from evo import evolve
    from evo.trial import Budget

    sp = space()
    fitness = Pinned(sp, seconds=0.02)
    result = evolve(
        sp,
        fitness,
        budget=Budget(steps=10),
        evolution={"mode": "steady_state", "population_size": 8, "generations": 3},
        executor={"devices": ["a", "b"]},
    )
    assert result.evaluations + result.cache_hits == 8 + 3 * 8  # a bred twin of a finished trial is reused
    assert fitness.ledger["most"] == 4  # two devices x two trials each, in flight together
    assert {label for label, _ in fitness.ledger["ran"]} == {"a", "b"}


def test_status_and_progress_name_the_devices(synthetic_config, tmp_path, capsys):
    synthetic_config["fitness"].update(seconds_per_trial=0.005)
    progress = io.StringIO()
    run(synthetic_config, tmp_path / "run", {"devices": ["a", "b"]}, observers=[TerminalProgress(progress)])
    lines = [line for line in progress.getvalue().splitlines() if " trial " in line]
    assert lines and all(" on a]" in line or " on b]" in line for line in lines)
    assert main(["status", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "generations finished: 5/5" in out
    counted = out.split("trials by device: ")[1].splitlines()[0]
    with RunStore.open(tmp_path / "run") as store:
        assert sum(int(part.split()[1]) for part in counted.split(", ")) == len(store.trials())


@pytest.mark.parametrize(
    "executor, message",
    [
        ({"devices": []}, "executor.devices: must be auto or a non-empty list"),
        ({"devices": "cuda"}, "executor.devices: must be auto or a non-empty list"),
        ({"devices": 2}, "executor.devices: must be auto or a non-empty list"),
        ({"devices": [0, "0"]}, "executor.devices: '0' is listed twice"),
        ({"devices": [0, -1]}, "executor.devices: -1 is not a device label"),
        ({"devices": [True]}, "executor.devices: True is not a device label"),
        ({"devices": ["0,1"]}, "executor.devices: '0,1' is not a device label"),
        ({"devices": [1.5]}, "executor.devices: 1.5 is not a device label"),
        ({"type": "ray", "devices": [0, 1]}, "executor.devices: Ray gives each actor the GPU it reserves"),
        ({"devices": [0, 1], "workers": 2}, "executor.workers: threads sharing one fitness"),
        ({"gpus_per_trial": 0.5}, "executor.gpus_per_trial: the local executor gives each worker one whole device"),
    ],
)
def test_bad_devices_are_one_line_config_errors(synthetic_config, executor, message):
    with pytest.raises(ConfigError, match=message) as caught:
        parse_config({**synthetic_config, "executor": executor})
    assert "\n" not in str(caught.value)


def test_the_resolved_config_keeps_the_devices(synthetic_config):
    config = parse_config({**synthetic_config, "executor": {"devices": [0, "GPU-3f2a"], "gpus_per_trial": 1}})
    assert config.executor.devices == (0, "GPU-3f2a")
    assert parse_config(config.raw).executor == config.executor
    assert parse_config(synthetic_config).executor.devices == "auto"


def test_resuming_on_another_executor_drops_what_only_the_other_reads():
    """``evo resume --executor``: a list of devices means nothing to Ray, a GPU share nothing locally."""
    local = ExecutorSettings(devices=("a", "b"))
    moved = _moved(local, argparse.Namespace(executor="ray", ray_address=None))
    assert moved.type is ExecutorType.RAY and moved.devices == "auto"
    ray = ExecutorSettings(type=ExecutorType.RAY, gpus_per_trial=0.5, address="auto")
    assert _moved(ray, argparse.Namespace(executor="local", ray_address=None)) == ExecutorSettings()
    assert _moved(local, argparse.Namespace(executor="local", ray_address=None)) is local
