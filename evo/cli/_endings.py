"""How a command ends: its exit code, a signal that stops it, and output whose reader left.

A scheduler reads the exit code alone, so each code means one thing (the README's table):

- 0: done; for ``run`` and ``resume``: the run finished with a complete trial of its search
- 1: an error evo did not expect (with its traceback), or nothing to show (``plot``)
- 2: refused before anything ran: a bad config, data, model or run directory
- 3: a run that cannot go on (``max_consecutive_failures`` in a row, RunAborted): fix, resume
- 4: a run that ended with no complete trial of its search (every one failed): no best config
- 128 + the signal: interrupted, by SIGINT (Ctrl-C) 130, SIGTERM 143, SIGHUP 129

SIGTERM (a scheduler, ``timeout``, ``kill``) and SIGHUP (a closed terminal) stop a command
as Ctrl-C does: :class:`Stopped` is a KeyboardInterrupt, so every ``finally`` runs, a run
records its trials in flight as interrupted, and ``evo resume`` continues it.

Output never ends a command: once the reader of stdout or stderr has gone (``evo run ... |
head``), what is written there goes to /dev/null and the command carries on to its end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any, TextIO, cast

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_REFUSED = 2
EXIT_RUN_STOPPED = 3
EXIT_NO_COMPLETE_TRIAL = 4
STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # and SIGINT, which Python raises as KeyboardInterrupt


class Stopped(KeyboardInterrupt):
    """A stopping signal other than SIGINT, raised where the driver was, as Ctrl-C is."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def interrupted_exit_code(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal, as a shell reports a process its signal ended."""
    return 128 + (interrupt.signum if isinstance(interrupt, Stopped) else signal.SIGINT)


def signal_name(interrupt: KeyboardInterrupt) -> str:
    return interrupt.args[0] if isinstance(interrupt, Stopped) else "SIGINT"


@contextlib.contextmanager
def stopping_signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Stopped` in the main thread while the command runs;
    the handlers before are put back after (a command run from Python). A signal ignored when
    the command starts stays ignored (``nohup evo run ...`` outlives its terminal), as Python
    leaves an ignored SIGINT; from a thread other than the main one, signals are left alone."""

    def stop(signum: int, frame: Any) -> None:
        raise Stopped(signum)

    before: dict[int, Any] = {}
    try:
        for signum in STOPPING_SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                before[signum] = signal.signal(signum, stop)
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for stopping, handler in before.items():
            signal.signal(stopping, handler)


@contextlib.contextmanager
def output_outlives_its_reader() -> Iterator[None]:
    """sys.stdout and sys.stderr, each silenced instead of raising once its reader has gone."""
    before = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Unbroken.around(sys.stdout), _Unbroken.around(sys.stderr)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):  # what is still buffered, while a broken pipe is silenced
            with contextlib.suppress(OSError, ValueError, AttributeError):
                stream.flush()
        sys.stdout, sys.stderr = before


class _Unbroken:
    """A text stream whose writes never raise BrokenPipeError: the first one points the stream's
    file descriptor at /dev/null (so the interpreter's last flush, C code and every later
    write go there quietly) and the write is done again, into nothing."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    @classmethod
    def around(cls, stream: TextIO) -> TextIO:
        return stream if isinstance(stream, cls) or stream is None else cast(TextIO, cls(stream))

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._to_devnull()
            return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._to_devnull()

    def _to_devnull(self) -> None:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, self._stream.fileno())
        finally:
            os.close(null)
        with contextlib.suppress(OSError, ValueError):  # what the reader missed: into /dev/null
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
