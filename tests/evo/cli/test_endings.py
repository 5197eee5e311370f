"""How a command ends (evo/cli/_endings.py): exit codes that tell the truth, SIGTERM and SIGHUP
stopping a run as Ctrl-C does, and output whose reader left silenced instead of ending the run.

The signals are real ones, sent to a real driver mid-trial; every wait polls with a
generous deadline, and no verdict depends on how long anything took.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evo import RunStore
from evo.cli import main
from evo.trial import FailureReason, TrialStatus

ROOT = Path(__file__).resolve().parents[3]
DEADLINE_S = 120.0
INTERRUPTED = "in flight when the driver stopped; evaluated again on resume"


def _signals_as_a_terminal_gives_them() -> None:
    """In the child: a backgrounded pytest's children inherit an ignored SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _evo(argv: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "evo.cli", *argv],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        text=True,
        **kwargs,
    )


def _poll(check, what: str):
    deadline = time.monotonic() + DEADLINE_S
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what} within {DEADLINE_S:g}s"
        time.sleep(0.05)
    return found


def _statuses(run_dir: Path) -> list[TrialStatus]:
    if not (run_dir / "run.db").exists():
        return []
    try:
        with RunStore.open(run_dir) as store:
            return [t.status for t in store.trials()]
    except Exception:  # noqa: BLE001 - being created right now: look again
        return []


def _sleepy_config(tmp_path: Path, synthetic_config: dict) -> Path:
    synthetic_config["fitness"]["seconds_per_trial"] = 0.3
    synthetic_config["evolution"]["generations"] = 200  # stopped long before its end
    synthetic_config["report_to"] = "none"
    path = tmp_path / "sleepy.json"
    path.write_text(json.dumps(synthetic_config))
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_a_stopping_signal_stops_a_run_as_ctrl_c_does(signum, tmp_path, synthetic_config):
    """Mid-trial, with --quiet and no --out: the generated directory is printed first, the trial
    in flight is recorded as interrupted, the one line names the directory, and it resumes."""
    config = _sleepy_config(tmp_path, synthetic_config)
    driver = _evo(
        ["run", str(config), "--quiet", "--no-plots"],
        tmp_path,
        stderr=subprocess.PIPE,
        preexec_fn=_signals_as_a_terminal_gives_them,
    )
    try:
        assert driver.stderr is not None
        first = driver.stderr.readline().rstrip("\n")
        assert first.startswith("run directory: runs/sleepy-"), first
        run_dir = tmp_path / first.removeprefix("run directory: ")
        _poll(lambda: TrialStatus.COMPLETE in _statuses(run_dir), "no trial completed")
        _poll(lambda: _statuses(run_dir)[-1:] == [TrialStatus.RUNNING], "no trial in flight")
        driver.send_signal(signum)
        _, err = driver.communicate(timeout=DEADLINE_S)
    finally:
        driver.kill()
    relative = run_dir.relative_to(tmp_path)
    assert driver.returncode == 128 + signum, err
    assert err.splitlines() == [
        f"evo: interrupted by {signum.name}; trials in flight are recorded as interrupted; "
        f"continue with 'evo resume {shlex.quote(str(relative))}'"
    ]
    with RunStore.open(run_dir) as store:
        trials = store.trials()
    assert TrialStatus.RUNNING not in [t.status for t in trials]
    interrupted = [t for t in trials if t.message == INTERRUPTED]
    assert interrupted and all(t.reason is FailureReason.KILLED for t in interrupted)
    if signum == signal.SIGTERM:  # and it continues as the line says
        assert main(["resume", str(run_dir), f"run_budget.trials={len(trials) + 2}", "--quiet", "--no-plots"]) == 0


def test_a_signal_ignored_at_the_start_stays_ignored(tmp_path, synthetic_config):
    """``nohup evo run ...``: the hang-up of its terminal does not stop it."""

    def without_hangups() -> None:
        _signals_as_a_terminal_gives_them()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    run_dir = tmp_path / "run"
    driver = _evo(
        ["run", str(_sleepy_config(tmp_path, synthetic_config)), "--out", str(run_dir), "--quiet", "--no-plots"],
        tmp_path,
        stderr=subprocess.PIPE,
        preexec_fn=without_hangups,
    )
    try:
        _poll(lambda: _statuses(run_dir)[-1:] == [TrialStatus.RUNNING], "no trial in flight")
        driver.send_signal(signal.SIGHUP)
        done = len(_statuses(run_dir))
        _poll(lambda: len(_statuses(run_dir)) > done + 1, "the run did not go on after SIGHUP")
        assert driver.poll() is None
        driver.send_signal(signal.SIGTERM)
        driver.communicate(timeout=DEADLINE_S)
    finally:
        driver.kill()
    assert driver.returncode == 143


def test_interrupted_before_the_run_started_says_so(tmp_path, write_config, synthetic_config, capsys, monkeypatch):
    def interrupted(spec):
        raise KeyboardInterrupt  # Ctrl-C while the fitness is being built (a model loading, a hub asked)

    monkeypatch.setattr("evo.cli._run_commands.make_fitness", interrupted)
    out = tmp_path / "run"
    assert main(["run", str(write_config(synthetic_config)), "--out", str(out), "--quiet"]) == 130
    assert capsys.readouterr().err == f"evo: interrupted by SIGINT before the run started: {out} holds no run\n"


def test_ctrl_c_during_export_optuna_does_not_advise_resume(
    tmp_path, synthetic_config, write_config, capsys, monkeypatch
):
    synthetic_config["report_to"] = "none"
    run_dir = tmp_path / "run"
    assert main(["run", str(write_config(synthetic_config)), "--out", str(run_dir), "--quiet", "--no-plots"]) == 0
    capsys.readouterr()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C half-way through the copy

    monkeypatch.setattr("evo.cli.export_run", interrupted)
    assert main(["export-optuna", str(run_dir), f"sqlite:///{tmp_path / 'optuna.db'}"]) == 130
    assert capsys.readouterr().err == "evo: interrupted by SIGINT\n"  # an export is not a run: nothing to resume


# -- exit codes ---------------------------------------------------------------------------


def test_a_run_whose_every_trial_failed_exits_4(tmp_path, synthetic_config, write_config, capsys):
    synthetic_config["fitness"]["failure_rate"] = 1.0
    synthetic_config["evolution"]["max_consecutive_failures"] = 1000  # so the run reaches its end
    run_dir = tmp_path / "run"
    assert main(["run", str(write_config(synthetic_config)), "--out", str(run_dir), "--quiet", "--no-plots"]) == 4
    assert capsys.readouterr().err == "no completed trial: no best config\n"
    assert main(["resume", str(run_dir), "--quiet", "--no-plots"]) == 4  # the run is still one without a result


def test_a_run_stopped_by_failures_exits_3_and_names_its_directory(tmp_path, synthetic_config, write_config, capsys):
    synthetic_config["fitness"]["failure_rate"] = 1.0
    synthetic_config["evolution"]["max_consecutive_failures"] = 3
    run_dir = tmp_path / "run"
    assert main(["run", str(write_config(synthetic_config)), "--out", str(run_dir), "--quiet", "--no-plots"]) == 3
    err = capsys.readouterr().err
    assert "3 evaluations in a row failed" in err and err.endswith(f"then 'evo resume {run_dir}'\n")


# -- output whose reader left ---------------------------------------------------------------


def _reader_gone() -> int:
    """The writing end of a pipe whose reader has already left: every write to it fails with EPIPE."""
    read, write = os.pipe()
    os.close(read)
    return write


def test_a_run_whose_output_reader_left_runs_to_its_end(tmp_path, synthetic_config, write_config):
    """``evo run ... 2>&1 | head``: a progress line never ends a run (it stopped after 2-3 trials, exit 0)."""
    synthetic_config["report_to"] = "none"
    config = write_config(synthetic_config)
    whole, piped = tmp_path / "whole", tmp_path / "piped"
    assert main(["run", str(config), "--out", str(whole), "--quiet", "--no-plots"]) == 0
    broken = _reader_gone()
    try:
        done = _evo(["run", str(config), "--out", str(piped), "--no-plots"], tmp_path, stdout=broken, stderr=broken)
        done.wait(timeout=DEADLINE_S)
    finally:
        os.close(broken)
    assert done.returncode == 0
    with RunStore.open(whole) as a, RunStore.open(piped) as b:
        assert [(t.config, t.values) for t in a.trials()] == [(t.config, t.values) for t in b.trials()]
        assert b.finished_generations() == a.finished_generations() == list(range(5))


def test_a_read_command_whose_reader_left_ends_quietly(tmp_path, synthetic_config, write_config):
    """``evo status RUN | head``: exit 0, and no 'Exception ignored ... BrokenPipeError' from the exit."""
    synthetic_config["report_to"] = "none"
    run_dir = tmp_path / "run"
    assert main(["run", str(write_config(synthetic_config)), "--out", str(run_dir), "--quiet", "--no-plots"]) == 0
    broken = _reader_gone()
    try:
        done = _evo(["status", str(run_dir)], tmp_path, stdout=broken, stderr=subprocess.PIPE)
        _, err = done.communicate(timeout=DEADLINE_S)
    finally:
        os.close(broken)
    assert (done.returncode, err) == (0, "")
