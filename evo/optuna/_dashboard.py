"""``evo dashboard``: optuna-dashboard on runs' journals, while they run and after.

A running run's driver writes its journal (the mirror, ``evo.optuna._mirror``) and the
dashboard reads it as it grows. A run no driver holds is first brought up to date from
``run.db`` (its journal may be missing: ``report_to: none``, or optuna was not installed
when it ran; or torn by a killed write or a full disk, then rewritten from run.db), holding
the run's lock meanwhile so no driver starts writing beside it. A run in a read-only
directory is shown from run.db alone, in memory: the dashboard writes nothing into it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from evo.evaluation import stored_objectives
from evo.optuna._mirror import (
    EXTRA,
    JOURNAL,
    add_trials,
    journal_path,
    optuna_installed,
    optuna_version,
    study_name,
    sync,
)
from evo.storage import RunDirInUse, RunDirLock, RunStore
from evo.trial import ConfigError

HOST = "127.0.0.1"  # this machine only: the dashboard can write notes and delete studies
PORT = 8080  # optuna-dashboard's own default


def check_installed() -> None:
    if importlib.util.find_spec("optuna_dashboard") is None:
        raise ConfigError(f"evo dashboard needs optuna-dashboard: {EXTRA}")
    if not optuna_installed():
        raise ConfigError(f"evo dashboard needs Optuna 4 or later (found {optuna_version()}): {EXTRA}")


def prepare(run_dir: Path) -> Any:
    """The Optuna storage that shows the run: its journal, brought up to date from run.db
    (a torn one rewritten) when no driver holds the run; a running run's journal as its
    driver keeps it; a study built in memory from run.db when the directory is read-only."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    RunStore.read(run_dir).close()  # not a run, or a damaged one: a StoreError naming it
    if not os.access(run_dir, os.W_OK):
        return in_memory(run_dir)
    lock = RunDirLock(run_dir)
    try:
        lock.acquire(driver=False)
    except RunDirInUse:  # running: its driver's mirror keeps the journal
        if not journal_path(run_dir).exists():
            raise ConfigError(
                f"{run_dir}: its run writes no {JOURNAL} (report_to: none, or optuna missing when it"
                " started); evo dashboard can show it once it ends"
            ) from None
    else:
        try:
            sync(run_dir)
        finally:
            lock.release()
    return JournalStorage(JournalFileBackend(str(journal_path(run_dir))))


def in_memory(run_dir: Path) -> Any:
    """The run's study in an Optuna in-memory storage, read from run.db alone."""
    import optuna

    with RunStore.read(run_dir) as store:
        objectives = stored_objectives(store)
        storage = optuna.storages.InMemoryStorage()
        study = optuna.create_study(
            study_name=study_name(run_dir), storage=storage, directions=[o.direction.value for o in objectives]
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # set_metric_names is experimental
            study.set_metric_names([o.name for o in objectives])
        add_trials(study, store, store.trials())
    return storage


def storage_of(storages: Sequence[Any]) -> Any:
    """One Optuna storage for the runs': the one itself, or their union."""
    if len(storages) == 1:
        return storages[0]
    from evo.optuna._study_union import StudyUnion

    return StudyUnion(list(storages))


def make_server(storage: Any, host: str, port: int) -> Any:
    """A threaded WSGI server of optuna-dashboard's app on ``host:port`` (0: a free port),
    quiet per request, as optuna-dashboard's own command serves it."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
    from wsgiref.simple_server import make_server as wsgi_server

    from optuna_dashboard import wsgi

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True  # a browser's idle connection must not keep Ctrl-C waiting
        block_on_close = False

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    try:
        return wsgi_server(host, port, wsgi(storage), server_class=Server, handler_class=Quiet)
    except OSError as exc:
        raise ConfigError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None


def serve(run_dirs: Sequence[Path], *, host: str = HOST, port: int = PORT, out: TextIO | None = None) -> int:
    """Serve the runs' studies until interrupted; prints the URL first."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: not a port (1 to 65535, or 0 for any free one)")
    check_installed()
    unique = list(dict.fromkeys(Path(os.path.abspath(d)) for d in run_dirs))
    storages = [prepare(d) for d in unique]
    server = make_server(storage_of(storages), host, port)
    names = ", ".join(d.name for d in unique)
    print(
        f"evo dashboard: http://{host}:{server.server_port}/ ({names}; Ctrl-C stops it)",
        file=out or sys.stdout,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # how a dashboard is stopped: not an error
        pass
    finally:
        server.server_close()
    return 0
