"""evo dashboard: optuna-dashboard serves runs' journals on localhost, for a finished run and
for one still running (read live as its driver writes), several runs at once; and the
one-line refusals (no extra, not a run, a running run without a journal, a taken port)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from evo import RunStore, parse_config, start_run
from evo.cli import main
from evo.optuna._mirror import JOURNAL, TRIAL_ID, journal_path
from evo.storage import RunDirInUse, RunDirLock
from evo.trial import TrialStatus
from fitness import make_fitness
from tests.conftest import ROOT
from tests.evo.optuna.test_optuna_mirror import _assert_mirrors, _load

START_TIMEOUT = 60  # seconds for the server to print its URL on a busy 2-core machine


def _ctrl_c_works() -> None:
    """In the child: SIGINT as a terminal gives it (a shell ignores it in background jobs,
    and the child would inherit that from a backgrounded pytest)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def dashboard(argv: list[str], cwd: Path | None = None) -> Iterator[str]:
    """``evo dashboard ARGV --port 0`` in a subprocess; yields its URL, then stops it with
    Ctrl-C (SIGINT) and checks that it exits 0."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "evo.cli", "dashboard", *argv, "--port", "0"],
        cwd=cwd,
        env=env,
        preexec_fn=_ctrl_c_works,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline() if proc.stdout else ""))
    reader.start()
    reader.join(START_TIMEOUT)
    try:
        assert lines and lines[0].startswith("evo dashboard: http://127.0.0.1:"), (lines, proc.poll())
        yield lines[0].split()[2]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err[-2000:]


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read()


def studies(url: str) -> dict[str, dict]:
    """Each study the server shows, by name, with its trials."""
    listed = json.loads(get(url + "api/studies")[1])["study_summaries"]
    return {s["study_name"]: json.loads(get(f"{url}api/studies/{s['study_id']}")[1]) for s in listed}


def evo_ids(study: dict) -> list[int]:
    return sorted(int(a["value"]) for t in study["trials"] for a in t["user_attrs"] if a["key"] == TRIAL_ID)


def finished_ids(run_dir: Path) -> list[int]:
    with RunStore.open(run_dir) as store:
        return [t.id for t in store.trials() if t.status is not TrialStatus.RUNNING]


def test_finished_runs_are_served_with_every_trial(tmp_path, synthetic_config):
    config = parse_config(synthetic_config)
    start_run(config, make_fitness(config.fitness), tmp_path / "mirrored")
    synthetic_config["report_to"] = "none"  # no journal yet: the dashboard writes it from run.db
    synthetic_config["seed"] = 4
    config = parse_config(synthetic_config)
    start_run(config, make_fitness(config.fitness), tmp_path / "unmirrored")
    assert not journal_path(tmp_path / "unmirrored").exists()

    with dashboard([str(tmp_path / "mirrored"), str(tmp_path / "unmirrored")]) as url:
        status, page = get(url)  # / redirects to the single-page app
        assert status == 200 and b"<html" in page.lower()
        shown = studies(url)
        assert set(shown) == {"mirrored", "unmirrored"}
        for name in shown:  # each study holds its own run's trials (the two ids never mix)
            assert evo_ids(shown[name]) == finished_ids(tmp_path / name)
    _assert_mirrors(tmp_path / "unmirrored")


def test_a_running_run_is_served_live(tmp_path, synthetic_config):
    synthetic_config["fitness"]["seconds_per_trial"] = 0.2
    synthetic_config["evolution"] = {"population_size": 4, "generations": 200}  # stopped long before its end
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(synthetic_config))
    run_dir = tmp_path / "run"
    driver = subprocess.Popen(
        [sys.executable, "-m", "evo.cli", "run", str(config_file), "--out", str(run_dir), "--quiet", "--no-plots"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=_ctrl_c_works,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not journal_path(run_dir).exists():
            assert driver.poll() is None and time.monotonic() < deadline, "no journal appeared"
            time.sleep(0.1)
        with dashboard([str(run_dir)]) as url:
            assert get(url)[0] == 200
            first = seen = len(studies(url)["run"]["trials"])
            deadline = time.monotonic() + START_TIMEOUT
            while seen <= first and time.monotonic() < deadline:
                time.sleep(0.5)
                seen = len(studies(url)["run"]["trials"])
            assert seen > first, "the dashboard did not show the trials the run added"
            with pytest.raises(RunDirInUse):  # the dashboard left the run to its driver
                RunDirLock(run_dir).acquire()
        assert driver.poll() is None, "the run ended: it cannot show that the dashboard read it live"
    finally:
        driver.send_signal(signal.SIGINT)  # Ctrl-C: stopped, to be resumed
        _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err[-2000:]
    mirrored = [t.user_attrs[TRIAL_ID] for t in _load(run_dir).trials]
    assert len(mirrored) == len(set(mirrored)) and set(mirrored) <= set(finished_ids(run_dir))
    assert len(finished_ids(run_dir)) - len(mirrored) <= 1  # at most the trial the interrupt caught


def test_refusals_are_one_line_and_exit_2(tmp_path, synthetic_config, capsys, monkeypatch):
    import importlib.util

    synthetic_config["report_to"] = "none"
    config = parse_config(synthetic_config)
    start_run(config, make_fitness(config.fitness), tmp_path / "run")

    def refused(argv: list[str]) -> str:
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("evo: error: "), err
        return err

    assert f"{tmp_path / 'none'}: not a run directory" in refused(["dashboard", str(tmp_path / "none")])

    lock = RunDirLock(tmp_path / "run")  # as a driver would hold it, in this process: a running run
    lock.acquire()
    try:
        err = refused(["dashboard", str(tmp_path / "run")])
        assert f"its run writes no {JOURNAL}" in err and "once it ends" in err
    finally:
        lock.release()
    assert not journal_path(tmp_path / "run").exists()  # nothing written beside a driver

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = refused(["dashboard", str(tmp_path / "run"), "--port", str(port)])
        assert f"--port {port}: cannot listen there" in err

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "optuna_dashboard" else real(name, *a)
    )
    err = refused(["dashboard", str(tmp_path / "run")])
    assert "evo dashboard needs optuna-dashboard: pip install 'evo-qlora[dashboard]'" in err
