"""What every layer may raise or warn: a bad input, a run that cannot go on, and a name a release renamed."""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

LONGEST_WORD = 200  # characters of one word of a message (a name, a value, a path) kept whole
_LONG_WORD = re.compile(rf"\S{{{LONGEST_WORD + 1},}}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(message: str) -> str:
    """``message`` as one line of reasonable length: control characters escaped (a newline in
    a value must not start a second line) and each word past LONGEST_WORD characters cut (a
    20,000-character gene name must not make a 40 KB line), saying how long it was."""
    message = _CONTROL.sub(lambda m: repr(m.group())[1:-1], message)
    return _LONG_WORD.sub(lambda m: f"{m.group()[:48]}...{m.group()[-24:]} ({len(m.group()):,} characters)", message)


class ConfigError(ValueError):
    """A bad run config, search space, data set or model path.

    The message is one line that names the culprit (``one_line``); the CLI prints it and exits 2.
    """

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(one_line(str(message)), *args)


class OneLineError(RuntimeError):
    """Base of the errors a command prints as its one line (a damaged or unusable run
    directory): the message goes through ``one_line`` as a ConfigError's does."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(one_line(str(message)), *args)


class RunAborted(RuntimeError):
    """A run that cannot go on (its trials failed too many times in a row, its fitness reports
    less than its run budget needs, or the disk is full). What ran is recorded; the CLI exits 3, and
    ``evo resume`` continues once the cause is fixed."""


class Deprecated(FutureWarning):
    """A key, flag or name that a release renamed: it still works, and the warning says what
    to use instead. A FutureWarning, so that users see it; the CLI prints it on one line."""


def renamed(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` (a config key, a flag, a name) is now ``new``, with the same meaning."""
    warnings.warn(f"{old} is deprecated since 0.2.0: use {new} (the same setting)", Deprecated, stacklevel=stacklevel)


def renamed_keywords(**new_name_of: str) -> Callable[[F], F]:
    """A function that still takes the keyword arguments a release renamed (``old="new"``):
    an old one is passed on under its new name, with the warning of :func:`renamed`."""

    def wrap(function: F) -> F:
        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            for old, new in new_name_of.items():
                if old in kwargs:
                    renamed(f"{function.__name__}({old}=...)", f"{function.__name__}({new}=...)")
                    kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return call  # type: ignore[return-value]

    return wrap
