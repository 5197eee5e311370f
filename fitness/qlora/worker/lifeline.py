"""A worker's life tied to its driver's: it never outlives the process that started it.

A worker left behind by a dead driver keeps training, and on a GPU keeps its memory,
while the resumed run starts another. So a worker calls :func:`die_with_parent` first:

- on Linux the kernel kills it with SIGKILL the moment its parent dies, SIGKILL of the
  parent included (``prctl(PR_SET_PDEATHSIG)``), and the parent pid is checked once more
  right after, since a parent that died before the call sends nothing;
- everywhere, a watchdog thread checks the parent every ``WATCH_INTERVAL_S`` and exits the
  worker when it is gone (reparented); it covers other systems and a prctl that failed.

Linux sends the signal when the *thread* that started the worker ends, not only the
process: :class:`fitness.qlora.worker.supervisor.TrialWorker` starts its workers from a
thread of its own that lives as long as it does, whatever thread evaluates.

Stopping is the driver's business: a worker ignores SIGINT and SIGHUP, which a terminal
sends to its whole process group on Ctrl-C or hang-up; the driver then records the trials
in flight as interrupted and kills the worker. SIGTERM keeps its default (it ends the
worker), since multiprocessing stops a forgotten worker with it at the driver's exit.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

WATCH_INTERVAL_S = 0.5  # the watchdog's period: a worker is gone within about this of its driver
ORPHANED_EXIT_CODE = 70  # the worker's exit status when it found its driver gone (EX_SOFTWARE)
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """Tie this process's life to ``parent_pid``'s (call it first thing in the worker)."""
    for name in ("SIGINT", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the signal was set: nobody will send it
        os._exit(ORPHANED_EXIT_CODE)
    threading.Thread(target=_watch, args=(parent_pid,), name="evo-parent-watchdog", daemon=True).start()


def set_parent_death_signal(signum: int) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent (thread) ends; False if refused."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):  # no libc or no prctl: the watchdog alone
        return False


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(WATCH_INTERVAL_S)
    os._exit(ORPHANED_EXIT_CODE)  # at once: no cleanup that could hang on a dead driver's pipe
