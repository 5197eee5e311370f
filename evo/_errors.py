"""What every layer may raise or warn: a bad input, a run that cannot go on, and a name a release renamed."""

from __future__ import annotations

import warnings


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
