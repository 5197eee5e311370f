"""Trials on several devices of this machine: one worker per device, side by side.

Each device gets its own fitness (``fitness.for_device(label)``: the QLoRA fitness then
starts its worker subprocess with ``CUDA_VISIBLE_DEVICES=<label>``) and its own thread,
which only waits on that fitness (the QLoRA fitness blocks on its worker's pipe). A
device takes up to its fitness's ``batch_capacity`` trials at once, one cohort, so the
executor's capacity is the sum over devices: every device stays busy.

Trials queue when submitted and are handed out in a ``wait`` that has no answer ready,
as the one-worker executor does: the queue is split evenly over the idle devices (a
cohort of 4 on one GPU is slower than 2 and 2 on two), each share at most that device's
capacity. A device's answers come back together, in submission order; devices answer in
completion order, so with several devices the order depends on timing (a generational
run selects in slot order and does not care; see ``executor.devices``). Every result
records the label of the device it ran on (``metrics["device_label"]``).

A worker that dies is the fitness's business: the QLoRA fitness fails that trial as
killed and starts a new worker on the same device for the next one.
"""

from __future__ import annotations

import concurrent.futures as futures
import itertools
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from evo.executors import labelled, run_batch
from evo.trial import Fitness, Trial, TrialResult


@dataclass
class _Device:
    label: str
    fitness: Fitness
    capacity: int
    pool: futures.ThreadPoolExecutor
    batch: list[tuple[int, Trial]] = field(default_factory=list)  # in flight, in submission order
    running: futures.Future | None = None


class DeviceExecutor:
    def __init__(self, fitness: Fitness, devices: Sequence[str]):
        if len(set(devices)) != len(devices) or not devices:
            raise ValueError(f"devices must be distinct labels, got {list(devices)}")
        self._devices: list[_Device] = []
        self._closed = False
        self._shared = fitness  # for_device may answer the driver's own fitness: not ours to close
        try:
            for label in devices:
                own = fitness.for_device(label)
                pool = futures.ThreadPoolExecutor(1, thread_name_prefix=f"evo-device-{label}")
                self._devices.append(_Device(label, own, max(1, own.batch_capacity), pool))
        except BaseException:
            self.close()
            raise
        self.capacity = sum(device.capacity for device in self._devices)
        self._tickets = itertools.count()
        self._queued: deque[tuple[int, Trial]] = deque()
        self._answered: deque[tuple[int, TrialResult]] = deque()

    @property
    def fitnesses(self) -> Mapping[str, Fitness]:
        """Each device's fitness, by label."""
        return {device.label: device.fitness for device in self._devices}

    def submit(self, trial: Trial) -> int:
        ticket = next(self._tickets)
        self._queued.append((ticket, trial))
        return ticket

    def wait(self) -> tuple[int, TrialResult]:
        while True:
            if self._closed:  # a driver blocked here when the run closed: nothing more is answered
                raise RuntimeError("the executor was closed; its trials in flight are abandoned")
            self._collect()
            if self._answered:  # handed out before anything new starts, so cohorts stay whole
                return self._answered.popleft()
            self._dispatch()
            busy = [device.running for device in self._devices if device.running is not None]
            if not busy:
                raise RuntimeError("wait() with no trial submitted")
            futures.wait(busy, return_when=futures.FIRST_COMPLETED)

    def close(self) -> None:
        """Trials in flight are abandoned; each device's fitness is closed (its worker stopped).
        The devices are let go first, so a trial its stopped worker fails is never answered."""
        devices, self._devices = self._devices, []
        self._closed = True
        for device in devices:
            device.pool.shutdown(wait=False, cancel_futures=True)
        for device in devices:
            if device.fitness is not self._shared:
                device.fitness.close()

    def _collect(self) -> None:
        """The answers of every device that has finished, the oldest batch first."""
        done = [device for device in self._devices if device.running is not None and device.running.done()]
        for device in sorted(done, key=lambda d: d.batch[0][0]):
            assert device.running is not None
            results = device.running.result()
            self._answered.extend(
                (ticket, labelled(result, device.label)) for (ticket, _), result in zip(device.batch, results)
            )
            device.batch, device.running = [], None

    def _dispatch(self) -> None:
        """The queue, split evenly over the idle devices, each share at most that device's capacity."""
        idle = [device for device in self._devices if device.running is None]
        for left, device in zip(range(len(idle), 0, -1), idle):
            share = min(device.capacity, math.ceil(len(self._queued) / left))
            if share == 0:
                break
            device.batch = [self._queued.popleft() for _ in range(share)]
            device.running = device.pool.submit(run_batch, device.fitness, [trial for _, trial in device.batch])
