"""``evo export-optuna``: a finished run copied into any Optuna storage, as one study.

A team keeps its studies in one database (``sqlite:///studies.db``, a PostgreSQL URL);
``optuna-dashboard URL`` or ``optuna.load_study`` then read the run beside the others. The
study is the run's journal's (``evo.optuna._mirror``), read from ``run.db`` itself. The
run's lock is held while it is read, so no driver resumes it meanwhile. A study already
in the storage is never touched unless ``--overwrite`` replaces it; a copy that fails
half-way is deleted, and one killed half-way (where nothing can delete it) is marked
``evo_export: partial`` from its first moment until its last trial is in. An SQLite URL
naming a run's own file, or an in-memory database, is refused.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path
from typing import TextIO

from evo.evaluation import stored_objectives
from evo.optuna._mirror import EXTRA, add_trials, optuna_installed, study_name
from evo.storage import RunDirInUse, RunDirLock, RunStore, check_output
from evo.trial import ConfigError, TrialStatus

EXPORT_STATE = "evo_export"  # the study's user attribute: PARTIAL until every trial is copied
PARTIAL, COMPLETE = "partial", "complete"


def export_run(
    run_dir: Path | str, url: str, *, name: str | None = None, overwrite: bool = False, out: TextIO | None = None
) -> int:
    """Copy the run into the storage at ``url`` as study ``name`` (default: the run's
    directory name) and say on ``out`` what was written; returns the exit code, 0.
    ``overwrite`` replaces a study of that name (a partial export included)."""
    if not optuna_installed():
        raise ConfigError(f"evo export-optuna needs Optuna 4 or later: {EXTRA}")
    run_dir = Path(run_dir)
    name = name or study_name(run_dir)
    _check_target(url)
    with RunStore.read(run_dir) as store:
        lock = RunDirLock(run_dir)
        try:
            lock.acquire(driver=False)
        except RunDirInUse as exc:
            raise ConfigError(f"{exc}; export it once it ends (evo dashboard {run_dir} shows it live)") from None
        try:
            storage = _storage(url)
            _make_room(storage, url, name, overwrite)
            added, complete = _copy(store, storage, name, run_dir)
        finally:
            lock.release()
    print(f"{_shown(url)}: study {name!r}, {added} trials ({complete} complete) from {run_dir}", file=out or sys.stdout)
    return 0


def _check_target(url: str) -> None:
    """An SQLite URL must name a file, and not one of a run (run.db, its journal, a copy of a
    run.db): Optuna would add its tables to the run's database."""
    if not url.startswith("sqlite"):
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        database = make_url(url).database or ""
    except ArgumentError:
        return  # _storage says why, in one line
    query = url.partition("?")[2]
    if database in ("", ":memory:") or database.startswith("file::memory:") or "mode=memory" in query:
        raise ConfigError(f"{_shown(url)}: an in-memory database ends with the command; give a file, sqlite:///PATH")
    path = database.removeprefix("file:").partition("?")[0]
    check_output(path, flag="STORAGE_URL")


def _make_room(storage, url: str, name: str, overwrite: bool) -> None:
    """Refuse a study already named ``name``, unless ``overwrite``: then delete it."""
    import optuna

    found = next((s for s in storage.get_all_studies() if s.study_name == name), None)
    if found is None:
        return
    if overwrite:
        optuna.delete_study(study_name=name, storage=storage)
        return
    partial = found.user_attrs.get(EXPORT_STATE) == PARTIAL
    what = "a partial export (stopped half-way), a study" if partial else "a study"
    raise ConfigError(
        f"{_shown(url)}: already holds {what} named {name!r}; replace it with --overwrite, "
        "or name this one with --study-name"
    )


def _shown(url: str) -> str:
    """``url`` with its password hidden, for messages."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)


def _storage(url: str):
    """The Optuna storage at ``url``, or a ConfigError naming it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if "://" not in url:
        raise ConfigError(f"{_shown(url)}: not a storage URL; give one such as sqlite:///studies.db")
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # SQLAlchemy's parse, driver and connection errors alike
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{_shown(url)}: cannot open it as an Optuna storage ({reason})") from None


def _copy(store: RunStore, storage, name: str, run_dir: Path) -> tuple[int, int]:
    import optuna

    objectives = stored_objectives(store)
    study = optuna.create_study(storage=storage, study_name=name, directions=[o.direction.value for o in objectives])
    study.set_user_attr(EXPORT_STATE, PARTIAL)  # first: a copy killed half-way says so
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # set_metric_names is experimental
            study.set_metric_names([o.name for o in objectives])
        study.set_user_attr("evo_run_dir", os.path.abspath(run_dir))
        trials = store.trials()
        added = add_trials(study, store, trials)
        study.set_user_attr(EXPORT_STATE, COMPLETE)
    except BaseException:
        optuna.delete_study(study_name=name, storage=storage)  # no half study left behind
        raise
    complete = sum(1 for t in trials if t.status is TrialStatus.COMPLETE and t.full)
    return added, complete
