"""Helpers for the kill tests: processes that really die, and a check that a pid is really gone.

The children are module-level functions, so that a spawned process can import them; each
writes ``<marker>.<name>`` when it reaches a point the test waits for, then sleeps.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from fitness.qlora.worker.lifeline import die_with_parent, leave_stopping_to_the_driver, set_parent_death_signal

GONE_WITHIN_S = 5.0  # the bound: a worker is gone this long after its driver died


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (dead, not yet reaped by whoever adopted it) is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def gone_within(pid: int, seconds: float) -> float | None:
    """Seconds until ``pid`` was gone, polled; None if it still ran after ``seconds``."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if not alive(pid):
            return time.monotonic() - start
        time.sleep(0.05)
    return None


@contextlib.contextmanager
def reaped(driver: subprocess.Popen, pids: list[int]) -> Iterator[None]:
    """Whatever the test found, its driver and the processes in ``pids`` (added as found) end."""
    try:
        yield
    finally:
        driver.kill()
        driver.wait(timeout=60)
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def wait_for(path: Path, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {seconds:g}s"
        time.sleep(0.05)


def _mark(marker: str, name: str) -> None:
    Path(f"{marker}.{name}").write_text(str(os.getpid()))


def tied(driver_pid: int, marker: str) -> None:
    """A worker tied to its driver as the QLoRA worker is, then busy for ten minutes."""
    die_with_parent(driver_pid)
    leave_stopping_to_the_driver()
    _mark(marker, "tied")
    time.sleep(600)


def watched_only(driver_pid: int, marker: str) -> None:
    """Tied, then the parent-death signal taken back: only the watchdog is left to notice."""
    die_with_parent(driver_pid)
    assert set_parent_death_signal(0)
    _mark(marker, "tied")
    time.sleep(600)


def tied_late(driver_pid: int, marker: str) -> None:
    """Ties itself only once ``<marker>.go`` exists, which the test writes after killing the driver:
    the race where a driver dies before its worker has asked the kernel to tell it."""
    _mark(marker, "started")
    wait_for(Path(f"{marker}.go"), 600)
    die_with_parent(driver_pid)
    _mark(marker, "tied")
    time.sleep(600)


DRIVER = """
import multiprocessing, os, sys, time
from tests.fitness.qlora.worker import orphans

if __name__ == "__main__":
    child = multiprocessing.get_context("spawn").Process(
        target=getattr(orphans, sys.argv[1]), args=(os.getpid(), sys.argv[2]), daemon=True
    )
    child.start()
    print(child.pid, flush=True)
    time.sleep(600)
"""


QLORA_DRIVER = """
import json, sys
from evo.trial import Budget, Trial
from fitness.qlora.spec import QLoRASpec
from fitness.qlora.worker.supervisor import WorkerSupervisor

if __name__ == "__main__":
    worker = WorkerSupervisor(QLoRASpec.from_dict(json.loads(sys.argv[1])).worker_settings)
    first = worker.evaluate_batch([Trial(0, {"r": 4}, Budget(steps=1), seed=1)])[0]
    assert first.ok, first.message
    print(worker.pid, flush=True)
    worker.evaluate_batch([Trial(1, {"r": 4}, Budget(steps=10**7), seed=1)])  # until killed
"""


def spawned_workers(driver_pid: int) -> list[int]:
    """The multiprocessing workers ``driver_pid`` started (its resource tracker left out)."""
    children = []
    for task in Path(f"/proc/{driver_pid}/task").glob("*"):
        try:
            children += [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:
            continue
    found = []
    for pid in children:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            found.append(pid)
    return found
