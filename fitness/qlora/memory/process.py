"""The process's memory: RSS, per-trial peaks, freed heap handed back, and an optional cap on
what a trial may allocate. Linux (elsewhere: RSS from getrusage, no trim, no cap)."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import resource
from collections.abc import Iterator
from pathlib import Path

_STATUS = Path("/proc/self/status")


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def release_freed_memory() -> None:
    """Collect garbage and hand the freed heap back to the OS, so RSS growth means a leak."""
    gc.collect()
    trim_heap()


def trim_heap() -> None:
    """Give the heap pages freed so far back to the OS (glibc keeps them otherwise; elsewhere a no-op).

    Before a validation this matters for the peak: glibc keeps the training step's freed pages,
    and the validation's large blocks, mapped afresh, come on top, so the trial's peak was nearer
    the training step's plus the validation's than the larger of the two (SmolLM2-135M at 4x128
    in float32: 1.73 GB over the base without it, 1.34 GB with it; docs/memory.md).
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def reset_peak_rss() -> None:
    """Make VmHWM restart from the current RSS, so the next peak is this trial's (Linux >= 4.0)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    kb = _status_kb("VmHWM")
    return kb / 1024 if kb is not None else rss_mb()


@contextlib.contextmanager
def address_space_cap(headroom_mb: float | None) -> Iterator[None]:
    """Let the block allocate at most ``headroom_mb`` more virtual memory, then lift the cap.

    Past the cap, allocations really fail (MemoryError, or torch's "can't allocate
    memory"), which the trial reports as OOM instead of the kernel killing the machine.
    """
    size_kb = _status_kb("VmSize")
    if headroom_mb is None or size_kb is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size_kb * 1024 + int(headroom_mb * 2**20), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
