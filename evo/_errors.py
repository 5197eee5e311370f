"""What every layer may raise or warn: a bad input, a run that cannot go on, and a name a release renamed."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class ConfigError(ValueError):
    """A bad run config, search space, data set or model path.

    The message is one line that names the culprit; the CLI prints it and exits 2.
    """


class RunAborted(RuntimeError):
    """A run that cannot go on (its trials failed too many times in a row, or its fitness
    reports less than its run budget needs). What ran is recorded; the CLI exits 3, and
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
