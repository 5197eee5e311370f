"""What a command may write, checked in one place before anything is written.

A run directory's own files (``RUN_FILES``, and everything under ``RUN_FOLDERS``) belong
to its run: only the command that owns one writes it (the driver its run.db, config.yaml
and artifacts through the store; ``evo report`` its report.html; ``evo plot`` its plots/).
Every other path a command writes (``evo best --export``, ``evo report --out``, ``evo plot
--out``, ``evo compare --out``, ``evo reference --out``, ``evo run --out``) goes through
:func:`check_output` first, which refuses in one line: an empty path (an unset shell
variable), a name longer than the file system holds, a directory where a file is written
(or a file where a directory is), a file of a run (found through symbolic links, and a
copy or hard link of a run.db by its contents), and a path whose parent is a file.
:func:`check_new_run` adds what a new run's directory must be: empty, or holding only
what a driver killed while creating a run there left.
"""

from __future__ import annotations

import contextlib
import fnmatch
import itertools
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from evo.storage import _schema
from evo.storage._records import StoreError
from evo.storage._sqlite import connect
from evo.trial import ConfigError

# A run directory's own files and folders (see the layout in docs/architecture.md).
RUN_FILES = (
    "run.db", "run.db-wal", "run.db-shm", "run.db-journal", "config.yaml", "config.yaml.tmp", ".lock",
    "optuna.journal", "optuna.journal.lock", "optuna.journal.rebuilt", "report.html",
)  # fmt: skip
RUN_FOLDERS = ("best", "best.new", "checkpoints", "trials", "plots", "trackers")
# What a driver killed while it created a run leaves (then ``evo run`` starts it again).
_UNBORN = ("run.db", "run.db-wal", "run.db-shm", "run.db-journal", ".lock", "config.yaml", "config.yaml.tmp")
_SQLITE_HEADER = b"SQLite format 3\x00"


def check_output(
    path: str | os.PathLike[str],
    *,
    flag: str,
    directory: bool = False,
    owner: Path | None = None,
    owns: Sequence[str] = (),
) -> Path:
    """``path`` as a Path once it is safe to write a file there (a directory with
    ``directory``), else a one-line ConfigError that starts with ``flag`` and the path.

    ``owner`` is the run directory the command works on, and ``owns`` the patterns
    (relative to it, e.g. ``plots/*.png``) of its files the command may write."""
    text = os.fspath(path)
    if not text.strip():
        raise ConfigError(f"{flag}: an empty path (an unset variable?); name a {'directory' if directory else 'file'}")
    shown = f"{flag} {_short(text)}"
    target = Path(text).expanduser()
    _check_name_lengths(target, shown)
    if target.is_dir() and not directory:
        raise ConfigError(f"{shown}: is a directory; name a file")
    if target.exists() and not target.is_dir() and directory:
        raise ConfigError(f"{shown}: is a file, not a directory")
    run, relative = run_holding(target)
    if run is not None and not _owned(run, relative, owner, owns):
        raise ConfigError(f"{shown}: is {relative} of the run in {_short(str(run))}; choose a path outside the run")
    if target.is_file() and holds_run_database(target):
        raise ConfigError(f"{shown}: holds an evo run's database; choose another path")
    parent = _existing_ancestor(target.parent)
    if not parent.is_dir():
        raise ConfigError(f"{shown}: {_short(str(parent))} is a file, not a directory")
    return target


def write_output(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` (checked by ``check_output``) whole or not at all:
    written aside and renamed, so an interrupted write leaves no half file. A failure is
    one ConfigError line naming the file."""
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.write_text(text)
        staging.replace(target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            staging.unlink(missing_ok=True)
        raise ConfigError(f"{_short(str(target))}: cannot write it ({exc.strerror or exc})") from None


def check_new_run(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path if a new run can be made there, else one line saying why: not a
    directory, holding a run, or holding anything a driver did not leave there (a user's
    config.yaml, plots, data)."""
    run_dir = check_output(path, flag="--out", directory=True)
    if not run_dir.is_dir():
        return run_dir
    if _schema.holds_run(run_dir / "run.db"):
        raise StoreError(f"{run_dir}: already holds a run; continue it with 'evo resume {run_dir}'")
    unborn = (run_dir / "run.db").exists()  # a driver killed inside the transaction that creates run.db
    leftovers = _UNBORN if unborn else (".lock",)
    foreign = sorted(p.name for p in run_dir.iterdir() if p.name not in leftovers)
    if foreign:
        raise StoreError(
            f"{_short(str(run_dir))}: holds {_short(foreign[0], 60)}{' and more' if len(foreign) > 1 else ''}, "
            "not a run of evo's; give --out an empty or new directory"
        )
    return run_dir


def claim_run_dir(base: Path) -> Path:
    """A new, empty directory named ``base``, or ``base-2``, ``base-3``, ... when another
    process took the name first: made with one atomic mkdir each, so two runs started in
    the same second never share a directory."""
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise AssertionError("unreachable")


def run_holding(path: Path) -> tuple[Path | None, str]:
    """The run directory ``path`` is a file or folder of (symbolic links followed), and the
    path inside it (``run.db``, ``plots/loss.png``); (None, "") when it is none of a run's."""
    resolved = Path(os.path.realpath(path))
    for run in resolved.parents:
        relative = resolved.relative_to(run)
        first = relative.parts[0]
        if first in RUN_FILES or first in RUN_FOLDERS:
            with contextlib.suppress(OSError):
                if (run / "run.db").is_file():
                    return run, relative.as_posix()
    return None, ""


def holds_run_database(path: Path) -> bool:
    """Whether ``path`` is an evo run.db (a copy or a hard link of one included): an SQLite
    file with the run store's meta table. Read without writing anything."""
    try:
        with open(path, "rb") as file:
            if file.read(16) != _SQLITE_HEADER:
                return False
        with contextlib.closing(connect(path, read_only=True)) as db:
            return db.execute("SELECT 1 FROM meta WHERE key = 'schema_version'").fetchone() is not None
    except (OSError, sqlite3.Error, StoreError):
        return False


def _owned(run: Path, relative: str, owner: Path | None, owns: Sequence[str]) -> bool:
    if owner is None or Path(os.path.realpath(owner)) != run:
        return False
    return any(fnmatch.fnmatchcase(relative, pattern) for pattern in owns)


def _check_name_lengths(target: Path, shown: str) -> None:
    """ENAMETOOLONG before anything is made: each name within NAME_MAX bytes, the whole within PATH_MAX."""
    anchor = _existing_ancestor(target.absolute())
    try:
        name_max = os.pathconf(anchor, "PC_NAME_MAX")
        path_max = os.pathconf(anchor, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    for part in target.absolute().parts:
        if len(os.fsencode(part)) > name_max:
            raise ConfigError(
                f"{shown}: a name of {len(os.fsencode(part))} bytes; the file system holds at most {name_max}"
            )
    if len(os.fsencode(str(target.absolute()))) >= path_max:
        raise ConfigError(f"{shown}: the path is longer than the file system holds ({path_max} bytes)")


def _existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (anything, a file too)."""
    for candidate in (path, *path.parents):
        with contextlib.suppress(OSError):
            if candidate.exists() or candidate.is_symlink():
                return candidate
    return Path(path.anchor or ".")


def _short(text: str, limit: int = 120) -> str:
    """A value cut for a message line (a 20,000-character name must not make a 40 KB line)."""
    return text if len(text) <= limit else f"{text[: limit - 24]}...({len(text):,} characters)"
