"""Resume after a real SIGKILL, and the one-driver-per-directory lock."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evo.cli import main
from evo.storage import RunStore

ROOT = Path(__file__).resolve().parents[3]


def evo(*argv, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "evo.cli", *map(str, argv)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def finished_trials(run_dir):
    try:
        with sqlite3.connect(run_dir / "run.db", timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM trials WHERE status != 'running'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def final_state(run_dir):
    with RunStore.open(run_dir) as store:
        last = store.finished_generations()[-1]
        population = [(i.genome, store.trial(i.trial_id).values) for i in store.population(last)]
        configs = [t.config for t in store.trials() if t.ok]
        return last, population, configs


def test_resume_after_sigkill_matches_an_uninterrupted_run(synthetic_config, write_config, tmp_path):
    synthetic_config["fitness"]["seconds_per_trial"] = 0.03
    config = write_config(synthetic_config)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert evo("run", config, "--out", whole, "--quiet", "--no-plots").wait(120) == 0

    proc = evo("run", config, "--out", killed, "--quiet", "--no-plots")
    wait_for(lambda: finished_trials(killed) >= 14)  # in generation 1 or 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    with RunStore.open(killed) as store:
        before = {t.id: (t.config, t.values) for t in store.trials() if t.ok}
        assert store.finished_generations()[-1] < 4  # really interrupted

    resumed = evo("resume", killed, "--quiet", "--no-plots")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert final_state(killed)[:2] == final_state(whole)[:2]
    with RunStore.open(killed) as store:
        after = {t.id: (t.config, t.values) for t in store.trials() if t.ok}
        # finished evaluations were kept, not redone; the one in flight was run again
        assert all(after[i] == before[i] for i in before)
        redone = [t for t in store.trials() if t.reason and t.reason.value == "killed"]
        assert len(redone) <= 1
    # no config was trained twice except the one in flight
    ok_configs = final_state(killed)[2]
    assert len(ok_configs) == len({str(sorted(c.items())) for c in ok_configs})


def test_a_second_driver_is_refused_while_the_first_runs(synthetic_config, write_config, tmp_path, capsys):
    synthetic_config["fitness"]["seconds_per_trial"] = 0.05
    run_dir = tmp_path / "run"
    first = evo("run", write_config(synthetic_config), "--out", run_dir, "--quiet", "--no-plots")
    try:
        wait_for(lambda: finished_trials(run_dir) >= 1)
        assert main(["resume", str(run_dir), "--quiet", "--no-plots"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "another evo driver" in err[0] and str(first.pid) in err[0]
    finally:
        first.kill()
        first.wait(10)
    # the killed driver's lock is reclaimed: resume now goes through
    assert main(["resume", str(run_dir), "--quiet", "--no-plots"]) == 0


def test_resume_of_a_finished_run_does_no_work(synthetic_config, write_config, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", str(write_config(synthetic_config)), "--out", str(run_dir), "--quiet", "--no-plots"]) == 0
    count = len(RunStore.open(run_dir).trials())
    assert main(["resume", str(run_dir), "--quiet", "--no-plots"]) == 0
    assert len(RunStore.open(run_dir).trials()) == count


def test_resume_refuses_a_changed_fitness_definition(synthetic_config, write_config, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", str(write_config(synthetic_config)), "--out", str(run_dir), "--quiet", "--no-plots"]) == 0
    with RunStore(run_dir) as store:  # somebody edits the stored config's fitness, in run.db and config.yaml
        raw = store.meta("config")
        raw["fitness"]["noise"] = 0.2
        store.set_config(raw)
    text = (run_dir / "config.yaml").read_text()
    assert main(["resume", str(run_dir)]) == 2
    assert "fitness definition" in capsys.readouterr().err
    assert (run_dir / "config.yaml").read_text() == text


@pytest.mark.slow  # tens of seconds: run with -m slow
def test_resume_of_multi_fidelity_and_pbt_runs_matches_an_uninterrupted_run(synthetic_config, write_config, tmp_path):
    """Killed mid-generation: halving replays from the stored rungs, PBT members continue
    their parents' checkpoints, and both end where an uninterrupted run ends."""
    synthetic_config["budget"] = {"steps": 90}
    synthetic_config["fitness"]["seconds_per_trial"] = 0.1
    modes = {
        "mf": {"population_size": 4, "offspring_size": 9, "generations": 2, "multi_fidelity": True},
        "pbt": {"population_size": 6, "mode": "pbt", "pbt": {"interval": 0.25}},
    }
    for name, evolution in modes.items():
        synthetic_config["evolution"] = evolution
        config = write_config(synthetic_config, f"{name}.yaml")
        whole, killed = tmp_path / f"{name}-whole", tmp_path / f"{name}-killed"
        assert evo("run", config, "--out", whole, "--quiet", "--no-plots").wait(120) == 0
        proc = evo("run", config, "--out", killed, "--quiet", "--no-plots")
        wait_for(lambda run_dir=killed: finished_trials(run_dir) >= 10)  # inside generation 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        with RunStore.open(killed) as store:
            assert store.finished_generations()[-1] < 2, name
        resumed = evo("resume", killed, "--quiet", "--no-plots")
        out, err = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, err
        assert final_state(killed)[:2] == final_state(whole)[:2], name
        assert not (killed / "checkpoints").exists()
