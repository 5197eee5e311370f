"""What every layer may raise or warn: a bad input, and a name a release renamed."""

from __future__ import annotations

import re
import warnings

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


class Deprecated(FutureWarning):
    """A key, flag or name that a release renamed: it still works, and the warning says what
    to use instead. A FutureWarning, so that users see it; the CLI prints it on one line."""


def renamed(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` (a config key, a flag, a name) is now ``new``, with the same meaning."""
    warnings.warn(f"{old} is deprecated since 0.2.0: use {new} (the same setting)", Deprecated, stacklevel=stacklevel)
