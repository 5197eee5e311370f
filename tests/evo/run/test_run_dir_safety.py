"""What happens to a run directory around a run (issue 30): a full disk mid-run is one line
saying what was kept, a torn journal is rewritten from run.db, config.yaml is checked and
restored, runs started together get a directory each, and --quiet stays quiet."""

from __future__ import annotations

import errno
import json
import warnings
from pathlib import Path

import pytest

from evo.cli import main
from evo.storage import RunStore
from evo.trial import TrialStatus

pytest.importorskip("optuna")


def _finished(run_dir: Path) -> int:
    with RunStore.read(run_dir) as store:
        return sum(1 for t in store.trials() if t.status is not TrialStatus.RUNNING)


def _journal_trials(run_dir: Path) -> int:
    """Trials in the run's journal, read by Optuna itself (which cannot replay a torn one)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(run_dir / "optuna.journal")))
    return len(optuna.load_study(study_name=run_dir.name, storage=storage).trials)


def _torn(journal: Path) -> bool:
    text = journal.read_bytes()
    try:
        [json.loads(line) for line in text.splitlines()]
    except ValueError:
        return True
    return not text.endswith(b"\n")


@pytest.fixture
def config(synthetic_config, write_config):
    synthetic_config["evolution"] = {"population_size": 4, "generations": 2}
    return write_config(synthetic_config)


def test_a_full_disk_mid_run_is_one_line_saying_what_was_kept_and_the_journal_is_rewritten(
    config, tmp_path, monkeypatch, capsys
):
    """The journal's write is cut mid-line by ENOSPC (as a full disk cuts it) on the third trial:
    the run stops with one line, run.db keeps every trial finished before, and the journal is
    rewritten from run.db at once; a resume then ends the run."""
    from optuna.storages.journal import JournalFileBackend

    append, calls = JournalFileBackend.append_logs, []

    def full_disk(self, logs):
        calls.append(logs)
        if len(calls) == 6:  # a study, its directions and names, then trials
            with open(self._file_path, "ab") as file:
                file.write(json.dumps(logs[0]).encode()[:25])
            raise OSError(errno.ENOSPC, "No space left on device", self._file_path)
        append(self, logs)

    monkeypatch.setattr(JournalFileBackend, "append_logs", full_disk)
    run_dir = tmp_path / "run"
    code = main(["run", str(config), "--out", str(run_dir), "--quiet", "--no-plots"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code not in (0, 2) and len(lines) == 1, lines
    kept = _finished(run_dir)
    assert "the disk is full: writing" in lines[0] and "optuna.journal" in lines[0], lines[0]
    assert f"run.db keeps the {kept} trials finished before it" in lines[0]
    assert not _torn(run_dir / "optuna.journal") and _journal_trials(run_dir) == kept
    monkeypatch.setattr(JournalFileBackend, "append_logs", append)
    assert main(["resume", str(run_dir), "--quiet", "--no-plots"]) == 0
    assert _journal_trials(run_dir) == _finished(run_dir) > kept


def test_a_full_disk_in_the_stores_write_path_stops_the_run_in_one_line(config, tmp_path, monkeypatch, capsys):
    from evo.storage import _store

    finish, calls = _store.RunStore.finish_trial, []

    def full_disk(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.run_dir / "run.db"))
        finish(self, *args, **kwargs)

    monkeypatch.setattr(_store.RunStore, "finish_trial", full_disk)
    run_dir = tmp_path / "run"
    code = main(["run", str(config), "--out", str(run_dir), "--quiet", "--no-plots"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code not in (0, 2) and len(lines) == 1 and "Traceback" not in lines[0], lines
    assert f"run.db keeps the {_finished(run_dir)} trials finished before it" in lines[0]


def test_a_torn_journal_is_rewritten_from_run_db_on_resume_and_by_the_dashboard(config, tmp_path):
    from evo.optuna._dashboard import prepare

    run_dir = tmp_path / "run"
    assert main(["run", str(config), "--out", str(run_dir), "--quiet", "--no-plots"]) == 0
    journal = run_dir / "optuna.journal"
    for repair in ("resume", "dashboard"):
        journal.write_bytes(journal.read_bytes()[:-40])  # cut mid-line, as a killed write leaves it
        assert _torn(journal)
        if repair == "resume":
            assert main(["resume", str(run_dir), "--quiet", "--no-plots"]) == 0
        else:
            storage = prepare(run_dir)
            assert len(storage.get_all_trials(storage.get_all_studies()[0]._study_id)) == _finished(run_dir)
        assert not _torn(journal) and _journal_trials(run_dir) == _finished(run_dir)


def test_a_deleted_config_yaml_is_written_again_and_an_edited_one_refused(config, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", str(config), "--out", str(run_dir), "--quiet", "--no-plots"]) == 0
    written = (run_dir / "config.yaml").read_text()
    (run_dir / "config.yaml").unlink()
    assert main(["resume", str(run_dir), "--quiet", "--no-plots"]) == 0
    assert (run_dir / "config.yaml").read_text() == written
    (run_dir / "config.yaml").write_text(written.replace("population_size: 4", "population_size: 9"))
    assert main(["resume", str(run_dir), "--quiet", "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "config.yaml: edited since the run started (evolution.population_size: 9 in the file, 4 in run.db)" in err


def test_runs_started_in_the_same_second_without_out_get_a_directory_each(config, tmp_path, monkeypatch):
    from evo.cli import _run_commands

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_run_commands.time, "strftime", lambda fmt: "20250101-120000")
    for _ in range(2):
        assert main(["run", str(config), "--quiet", "--no-plots"]) == 0
    made = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert made == ["config-20250101-120000", "config-20250101-120000-2"]
    assert all(_finished(tmp_path / "runs" / name) for name in made)


def test_a_refused_run_without_out_leaves_no_directory(synthetic_config, write_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    synthetic_config["fixed"] = {"lr_sheduler": "cosine"}  # refused once the fitness is built
    assert main(["run", str(write_config(synthetic_config)), "--quiet", "--no-plots"]) == 2
    assert not any((tmp_path / "runs").iterdir())


def test_a_run_directory_named_in_any_script_prints_no_font_warning_under_quiet(config, tmp_path, capsys):
    run_dir = tmp_path / "実験-ラン-σ"
    with warnings.catch_warnings(record=True) as caught:  # outside pytest they print on stderr
        warnings.simplefilter("always")
        assert main(["run", str(config), "--out", str(run_dir), "--quiet"]) == 0
    assert (run_dir / "plots" / "generation_fitness.png").is_file()  # its title names the run
    assert not [w for w in caught if "Glyph" in str(w.message)], [str(w.message) for w in caught]
    assert "Glyph" not in capsys.readouterr().err
