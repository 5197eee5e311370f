"""``evo dashboard``: optuna-dashboard on runs' journals, while they run and after.

A running run's driver writes its journal (the mirror, ``evo.optuna._mirror``) and the
dashboard reads it as it grows. A run no driver holds is first brought up to date from
``run.db`` (its journal may be missing: ``report_to: none``, or optuna was not installed
when it ran), holding the run's lock meanwhile so no driver starts writing beside it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from evo.optuna._mirror import EXTRA, JOURNAL, journal_path, optuna_installed, optuna_version, sync
from evo.storage import RunDirInUse, RunDirLock, RunStore
from evo.trial import ConfigError

HOST = "127.0.0.1"  # this machine only: the dashboard can write notes and delete studies
PORT = 8080  # optuna-dashboard's own default


def check_installed() -> None:
    if importlib.util.find_spec("optuna_dashboard") is None:
        raise ConfigError(f"evo dashboard needs optuna-dashboard: {EXTRA}")
    if not optuna_installed():
        raise ConfigError(f"evo dashboard needs Optuna 4 or later (found {optuna_version()}): {EXTRA}")


def prepare(run_dir: Path) -> Path:
    """The run's journal, brought up to date when no driver holds the run."""
    RunStore.read(run_dir).close()  # not a run: a StoreError naming it
    lock = RunDirLock(run_dir)
    try:
        lock.acquire()
    except RunDirInUse:  # running: its driver's mirror keeps the journal
        if not journal_path(run_dir).exists():
            raise ConfigError(
                f"{run_dir}: its run writes no {JOURNAL} (report_to: none, or optuna missing when it"
                " started); evo dashboard can show it once it ends"
            ) from None
        return journal_path(run_dir)
    try:
        sync(run_dir)
    finally:
        lock.release()
    return journal_path(run_dir)


def storage_of(journals: Sequence[Path]) -> Any:
    """One Optuna storage for the journals: the journal itself, or their union."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storages = [JournalStorage(JournalFileBackend(str(j))) for j in journals]
    if len(storages) == 1:
        return storages[0]
    from evo.optuna._study_union import StudyUnion

    return StudyUnion(storages)


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
    check_installed()
    unique = list(dict.fromkeys(Path(os.path.abspath(d)) for d in run_dirs))
    journals = [prepare(d) for d in unique]
    server = make_server(storage_of(journals), host, port)
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
