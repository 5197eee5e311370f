"""evo export-optuna: a finished run becomes one study of any Optuna storage, with the trials,
best value and params evo best gives; refusals are one line, exit 2, and change nothing."""

from __future__ import annotations

import optuna
import pytest
import yaml

from evo import RunStore, parse_config, start_run
from evo.cli import main
from evo.optuna._mirror import TRIAL_ID
from evo.storage import RunDirLock
from evo.trial import TrialStatus
from fitness import make_fitness
from tests.evo.optuna.test_optuna_mirror import _as_evo_best_prints
from tests.evo.strategies.test_strategies_unchanged import SCENARIOS

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def run_dir(tmp_path, synthetic_config):
    synthetic_config["fitness"]["failure_rate"] = 0.2  # failed trials travel too
    config = parse_config(synthetic_config)
    start_run(config, make_fitness(config.fitness), tmp_path / "exp-1")
    return tmp_path / "exp-1"


def _refused(argv, capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("evo: error: "), err
    return err


def test_a_run_is_copied_with_the_trials_and_best_of_evo_best(run_dir, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'team.db'}"
    assert main(["export-optuna", str(run_dir), url]) == 0
    assert capsys.readouterr().out.startswith(f"{url}: study 'exp-1', ")
    study = optuna.load_study(study_name="exp-1", storage=url)
    with RunStore.open(run_dir) as store:
        finished = [t for t in store.trials() if t.status is not TrialStatus.RUNNING]
    assert sorted(t.user_attrs[TRIAL_ID] for t in study.trials) == [t.id for t in finished]
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == sum(1 for t in finished if t.ok and t.full)
    assert study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert main(["best", str(run_dir)]) == 0
    best = yaml.safe_load(capsys.readouterr().out)
    assert study.best_trial.user_attrs[TRIAL_ID] == best["trial_id"]
    assert study.best_value == pytest.approx(best["objectives"]["val_perplexity"])
    assert _as_evo_best_prints(run_dir, study.best_trial) == best
    assert study.metric_names == ["val_perplexity"]
    assert study.user_attrs["evo_run_dir"] == str(run_dir.resolve())


def test_two_objectives_give_a_multi_objective_study(tmp_path, capsys):
    config = parse_config(SCENARIOS["two_objectives"]())
    result = start_run(config, make_fitness(config.fitness), tmp_path / "front")
    url = f"sqlite:///{tmp_path / 'team.db'}"
    assert main(["export-optuna", str(tmp_path / "front"), url]) == 0
    study = optuna.load_study(study_name="front", storage=url)
    assert study.metric_names == ["val_perplexity", "trainable_parameters"]
    assert sorted(t.user_attrs[TRIAL_ID] for t in study.best_trials) == sorted(t.id for t in result.best_trials)


def test_a_study_that_exists_is_refused_and_study_name_names_another(run_dir, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'team.db'}"
    assert main(["export-optuna", str(run_dir), url]) == 0
    before = len(optuna.load_study(study_name="exp-1", storage=url).trials)
    err = _refused(["export-optuna", str(run_dir), url], capsys)
    assert "already holds a study named 'exp-1'; replace it with --overwrite, or name this one with --study-name" in err
    assert len(optuna.load_study(study_name="exp-1", storage=url).trials) == before  # untouched
    assert main(["export-optuna", str(run_dir), url, "--study-name", "exp-1-again"]) == 0
    assert sorted(optuna.get_all_study_names(url)) == ["exp-1", "exp-1-again"]


@pytest.mark.parametrize(
    "url, says",
    [
        ("team.db", "not a storage URL; give one such as sqlite:///studies.db"),
        ("nosuchdb://host/x", "cannot open it as an Optuna storage"),
        ("sqlite:///{tmp}/missing/dir/team.db", "cannot open it as an Optuna storage"),
        ("postgresql+nosuchdriver://user:secret@127.0.0.1:1/db", "cannot open it as an Optuna storage"),
    ],
)
def test_a_bad_url_is_one_line_naming_it(run_dir, tmp_path, capsys, url, says):
    url = url.format(tmp=tmp_path)
    err = _refused(["export-optuna", str(run_dir), url], capsys)
    assert says in err and "secret" not in err  # the URL is named, its password is not
    assert not (tmp_path / "missing").exists() and not (tmp_path / "team.db").exists()


def test_a_running_run_or_no_run_is_refused(run_dir, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'team.db'}"
    lock = RunDirLock(run_dir)  # as its driver would hold it
    lock.acquire()
    try:
        err = _refused(["export-optuna", str(run_dir), url], capsys)
        assert "another evo driver" in err and "export it once it ends" in err
    finally:
        lock.release()
    assert "not a run directory" in _refused(["export-optuna", str(tmp_path / "none"), url], capsys)
    assert not (tmp_path / "team.db").exists()


def test_a_copy_that_fails_half_way_leaves_no_study(run_dir, tmp_path, monkeypatch, capsys):
    from evo.optuna import _export as _optuna_export

    url = f"sqlite:///{tmp_path / 'team.db'}"
    real = _optuna_export.add_trials

    def add_some(study, store, records):  # the storage goes away after a few trials
        real(study, store, list(records)[:3])
        raise OSError("disk full")

    monkeypatch.setattr(_optuna_export, "add_trials", add_some)
    with pytest.raises(OSError, match="disk full"):
        main(["export-optuna", str(run_dir), url])
    assert optuna.get_all_study_names(url) == []
    monkeypatch.setattr(_optuna_export, "add_trials", real)
    assert main(["export-optuna", str(run_dir), url]) == 0


KILLED_HALF_WAY = """
import os, signal, sys
from evo.cli import main
from evo.optuna import _export

real = _export.add_trials

def add_some(study, store, records):  # SIGKILL half-way: nothing can delete the study now
    real(study, store, list(records)[:3])
    os.kill(os.getpid(), signal.SIGKILL)

_export.add_trials = add_some
main(["export-optuna", sys.argv[1], sys.argv[2]])
"""


def test_an_export_killed_half_way_is_marked_partial_and_overwrite_replaces_it(run_dir, tmp_path, capsys):
    import subprocess
    import sys

    from evo.optuna._export import COMPLETE, EXPORT_STATE, PARTIAL
    from tests.conftest import ROOT

    url = f"sqlite:///{tmp_path / 'team.db'}"
    killed = subprocess.run([sys.executable, "-c", KILLED_HALF_WAY, str(run_dir), url], cwd=ROOT, capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    half = optuna.load_study(study_name="exp-1", storage=url)
    assert half.user_attrs[EXPORT_STATE] == PARTIAL and len(half.trials) == 3
    err = _refused(["export-optuna", str(run_dir), url], capsys)
    assert "already holds a partial export (stopped half-way), a study named 'exp-1'" in err
    assert "replace it with --overwrite" in err
    assert main(["export-optuna", str(run_dir), url, "--overwrite"]) == 0
    whole = optuna.load_study(study_name="exp-1", storage=url)
    with RunStore.read(run_dir) as store:
        assert len(whole.trials) == len(store.trials()) > 3
    assert whole.user_attrs[EXPORT_STATE] == COMPLETE and optuna.get_all_study_names(url) == ["exp-1"]


@pytest.mark.parametrize(
    "url, says",
    [
        ("sqlite://", "an in-memory database ends with the command"),
        ("sqlite:///:memory:", "an in-memory database ends with the command"),
        ("sqlite:///RUN/run.db", "is run.db of the run"),
        ("sqlite:///RUN/optuna.journal", "is optuna.journal of the run"),
        ("sqlite:///RUN/../exp-1/./run.db", "is run.db of the run"),
    ],
)
def test_a_run_s_own_file_or_an_in_memory_database_is_refused(run_dir, capsys, url, says):
    before = (run_dir / "run.db").read_bytes()
    err = _refused(["export-optuna", str(run_dir), url.replace("RUN", str(run_dir))], capsys)
    assert says in err
    assert (run_dir / "run.db").read_bytes() == before
