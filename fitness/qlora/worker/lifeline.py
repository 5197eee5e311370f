"""A worker's life tied to its driver's: it never outlives the process that started it.

A worker left behind by a dead driver keeps training, and on a GPU keeps its memory,
while the resumed run starts another. So a worker calls :func:`die_with_parent` first:

- on Linux the kernel kills it with SIGKILL the moment its parent dies, SIGKILL of the
  parent included (``prctl(PR_SET_PDEATHSIG)``), and the parent pid is checked once more
  right after, since a parent that died before the call sends nothing;
- everywhere, a watchdog thread checks the parent every ``WATCH_INTERVAL_S`` and exits the
  worker when it is gone (reparented); it covers other systems and a prctl that failed.

Linux sends the signal when the *thread* that started the worker ends, not only the
process: :class:`fitness.qlora.worker.supervisor.WorkerSupervisor` starts its workers from a
thread of its own that lives as long as it does, whatever thread evaluates.

A process started with ``subprocess`` ties itself before it runs anything:
``preexec_fn=dying_with(os.getpid())``. A pool's processes, with
``initializer=die_with_parent, initargs=(os.getpid(),)``.

Stopping is the driver's business (:func:`leave_stopping_to_the_driver`): the QLoRA worker
ignores SIGINT and SIGHUP, which a terminal sends to its whole process group on Ctrl-C or
hang-up; the driver then records the trials in flight as interrupted and kills the worker.
SIGTERM keeps its default (it ends the worker), since multiprocessing stops a forgotten
worker with it at the driver's exit.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

WATCH_INTERVAL_S = 0.5  # the watchdog's period: a worker is gone within about this of its driver
ORPHANED_EXIT_CODE = 70  # the worker's exit status when it found its driver gone (EX_SOFTWARE)
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """Tie this process's life to ``parent_pid``'s (call it first thing in the worker)."""
    _tie(parent_pid, _libc_prctl())
    threading.Thread(target=_watch, args=(parent_pid,), name="evo-parent-watchdog", daemon=True).start()


def dying_with(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child, between fork and exec, asks the
    kernel to kill it with its parent (the signal survives the exec; a thread would not, so
    no watchdog: Linux only). prctl is looked up here, in the parent: the child only calls it."""
    return functools.partial(_tie, parent_pid, _libc_prctl())


def leave_stopping_to_the_driver() -> None:
    """Ignore the SIGINT and SIGHUP a terminal sends to the whole process group."""
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


def set_parent_death_signal(signum: int, prctl: Callable[..., int] | None = None) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent (thread) ends; False if refused."""
    prctl = prctl or _libc_prctl()
    return prctl is not None and prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0


def _libc_prctl() -> Callable[..., int] | None:
    """libc's prctl, from the symbols already loaded (no library search); None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # no prctl: the watchdog alone
        return None


def _tie(parent_pid: int, prctl: Callable[..., int] | None) -> None:
    set_parent_death_signal(signal.SIGKILL, prctl)
    if os.getppid() != parent_pid:  # the parent died before the signal was set: nobody will send it
        os._exit(ORPHANED_EXIT_CODE)


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(WATCH_INTERVAL_S)
    os._exit(ORPHANED_EXIT_CODE)  # at once: no cleanup that could hang on a dead driver's pipe
