"""The run's files around run.db, from the driver's side: config.yaml checked against run.db
before a run continues, and a full disk turned into one line saying what was kept.

config.yaml is written for people; a run continues with the config in run.db, which is
what makes a resumed run end as an uninterrupted one. An edited config.yaml is refused
rather than warned about: a warning scrolls past while the run trains for hours on a
config the user believes changed, and the edit cannot be applied without making a
different run. ``evo resume RUN run_budget.KEY=VALUE`` is the way to change a run's limits;
a deleted config.yaml is written again from run.db.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from evo.config import read_yaml
from evo.evaluation import RunAborted
from evo.optuna import journal_path, repair
from evo.storage import DiskFull, RunStore, is_disk_full
from evo.trial import ConfigError

_SHOWN = 60  # characters of a value shown in the line


def check_config_file(store: RunStore) -> None:
    """Refuse a run whose config.yaml no longer says what run.db holds (one line naming the
    first key that differs); a missing one is fine (``restore_config_file`` writes it)."""
    assert store.run_dir is not None, "a run in memory has no config.yaml"
    path = store.run_dir / "config.yaml"
    if not path.exists():
        return
    written, stored = read_yaml(path), store.meta("config")
    if written == stored:
        return
    key, here, there = _first_difference(written, stored)
    raise ConfigError(
        f"{path}: edited since the run started ({key}: {_short(here)} in the file, {_short(there)} in run.db); "
        "a run continues as it started: undo the edit or delete the file, start a new run from it, "
        "or change limits with 'evo resume RUN run_budget.KEY=VALUE'"
    )


def restore_config_file(store: RunStore, config: Mapping[str, Any]) -> None:
    """Write config.yaml again from run.db when it was deleted."""
    if store.run_dir is not None and not (store.run_dir / "config.yaml").exists():
        store.write_config_file(config)


@contextlib.contextmanager
def stopped_by_full_disk(store: RunStore | None) -> Iterator[None]:
    """A full disk anywhere in the run (run.db, the journal, plots, config.yaml) ends it with
    one line (RunAborted) saying what run.db kept; the journal it may have torn is
    rewritten from run.db, or removed when there is no room for that either (resume
    writes it again)."""
    try:
        yield
    except DiskFull as exc:
        _journal_after_full_disk(store)
        raise RunAborted(str(exc)) from None
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        where = f"writing {exc.filename}" if exc.filename else "a write of the run"
        found = store.disk_full(where) if store is not None else DiskFull(f"the disk is full: {where}")
        _journal_after_full_disk(store)
        raise RunAborted(str(found)) from None


def _journal_after_full_disk(store: RunStore | None) -> None:
    if store is None or store.run_dir is None or not journal_path(store.run_dir).exists():
        return
    try:
        repair(store.run_dir, store)
    except Exception:  # noqa: BLE001 - no room to rewrite it: it is derived, so it goes
        with contextlib.suppress(OSError):
            journal_path(store.run_dir).unlink()


def _first_difference(a: Any, b: Any, key: str = "") -> tuple[str, Any, Any]:
    """The dotted key where ``a`` and ``b`` first differ, and the two values there."""
    if isinstance(a, dict) and isinstance(b, dict):
        for name in [*a, *(k for k in b if k not in a)]:
            if a.get(name, _MISSING) != b.get(name, _MISSING):
                return _first_difference(a.get(name, _MISSING), b.get(name, _MISSING), f"{key}.{name}".lstrip("."))
    return key or "(the whole file)", a, b


class _Missing:
    def __repr__(self) -> str:
        return "nothing"


_MISSING = _Missing()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[: _SHOWN - 16]}...({len(text):,} chars)"
