"""Every command that reads a run works on a read-only run directory and changes no byte of a
run (issue 30): they all open it through RunStore.read, and write only where they are told."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from evo.cli import main
from tests.conftest import read_only, small_synthetic_config


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished run with its journal and plots, as a user keeps one."""
    work = tmp_path_factory.mktemp("read-only")
    config = small_synthetic_config()
    config["evolution"]["generations"] = 3
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    run_dir = work / "run"
    assert main(["run", str(work / "config.yaml"), "--out", str(run_dir), "--quiet"]) == 0
    return run_dir


COMMANDS = {
    "status": ["status", "RUN"],
    "best": ["best", "RUN"],
    "best --export": ["best", "RUN", "--export", "OUT/best.yaml"],
    "report --out": ["report", "RUN", "--out", "OUT/report.html"],
    "plot --out": ["plot", "RUN", "--out", "OUT/plots"],
    "compare": ["compare", "RUN", "RUN", "--out", "OUT/compare.png"],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_read_only_command_works_on_a_read_only_run_and_changes_nothing(finished, tmp_path, capsys, name):
    argv = [a.replace("RUN", str(finished)).replace("OUT", str(tmp_path)) for a in COMMANDS[name]]
    before = _tree(finished)
    with read_only(finished):
        assert main(argv) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "damaged" not in err and "Traceback" not in err
    assert _tree(finished) == before


def test_the_dashboard_and_export_optuna_read_a_read_only_run(finished, tmp_path, capsys):
    pytest.importorskip("optuna")
    import optuna

    from evo.optuna._dashboard import prepare

    before = _tree(finished)
    with read_only(finished):
        storage = prepare(finished)  # from run.db, in memory: nothing can be written there
        (study,) = storage.get_all_studies()
        url = f"sqlite:///{tmp_path / 'team.db'}"
        assert main(["export-optuna", str(finished), url]) == 0, capsys.readouterr().err
    assert _tree(finished) == before
    exported = optuna.load_study(study_name=finished.name, storage=url)
    assert len(exported.trials) == len(storage.get_all_trials(study._study_id)) > 0


def test_reading_a_running_run_changes_nothing_either(finished, capsys):
    """Without a read-only directory: the reads open run.db read-only, so no -wal or -shm
    appears, and export-optuna keeps drivers out without writing its pid into .lock."""
    pytest.importorskip("optuna")
    before = _tree(finished)
    for argv in (
        ["status", str(finished)],
        ["best", str(finished), "--top", "2"],
        ["export-optuna", str(finished), f"sqlite:///{finished.parent / 'team.db'}"],
    ):
        assert main(argv) == 0
    assert _tree(finished) == before
