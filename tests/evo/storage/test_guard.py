"""A run directory guards itself (issue 30): one driver whatever happens to its files, one
guard for every file a command writes, one read-only open for every command that reads,
and damage or a full disk named in one line."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from evo.storage import (
    RUN_FILES,
    RUN_FOLDERS,
    DiskFull,
    RunDirInUse,
    RunStore,
    StoreError,
    check_new_run,
    check_output,
    claim_run_dir,
)
from evo.trial import ConfigError, Direction, Objective, TrialResult
from tests.conftest import ROOT, read_only

OBJECTIVES = (Objective("loss", Direction.MINIMIZE),)


def _run(run_dir: Path, trials: int = 3) -> Path:
    """A small run written through the store: ``trials`` finished trials, each with its individual."""
    with RunStore.create(run_dir, config={"seed": 1}, fingerprint="fp", objectives=OBJECTIVES) as store:
        members = store.add_individuals(0, [({"x": i}, "init", []) for i in range(trials)])
        for member in members:
            tid = store.start_trial(fingerprint="fp", config_key=str(member.id), config={"x": 1}, generation=0, seed=1)
            store.finish_trial(tid, TrialResult.complete({"loss": float(tid)}), member.id)
        store.finish_generation(0, [m.id for m in members], {"best": 1.0}, "entropy")
    return run_dir


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


# -- one driver ------------------------------------------------------------------------------
HOLDER = """
import sys
from evo.storage import RunStore
store = RunStore.open(sys.argv[1])
store.lock()
print("holding", flush=True)
sys.stdin.read()  # until the test closes the pipe
"""


def test_deleting_the_lock_file_while_a_driver_runs_does_not_let_a_second_one_in(tmp_path):
    """The lock is the directory's flock: the pid file can go, a new one can be made, and a
    second driver (another process, as a real one is) is still refused until the first ends."""
    run_dir = _run(tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        assert (run_dir / ".lock").read_text() == str(holder.pid)
        (run_dir / ".lock").unlink()  # a "stale lock" cleanup
        (run_dir / ".lock").write_text("")  # and a new file in its place: a new inode
        second = RunStore.open(run_dir)
        with pytest.raises(RunDirInUse, match="another evo driver"):
            second.lock()
        second.close()
        with pytest.raises(RunDirInUse, match=f"pid {holder.pid}"):  # the pid file is written again
            (run_dir / ".lock").write_text(str(holder.pid))
            RunStore.open(run_dir).lock()
    finally:
        holder.stdin.close()
        holder.wait()
    with RunStore.open(run_dir) as store:  # the first is gone: the directory is free at once
        store.lock()


def test_a_moved_run_directory_keeps_its_lock(tmp_path):
    first = RunStore.open(_run(tmp_path / "run"))
    first.lock()
    (tmp_path / "run").rename(tmp_path / "moved")
    second = RunStore.open(tmp_path / "moved")
    with pytest.raises(RunDirInUse):
        second.lock()
    second.close()
    first.close()


# -- the one guard for what a command writes ---------------------------------------------------
@pytest.mark.parametrize("name", [*RUN_FILES, *(f"{folder}/file" for folder in RUN_FOLDERS)])
def test_no_file_of_a_run_is_written_by_a_command_that_does_not_own_it(tmp_path, name):
    run_dir = _run(tmp_path / "run")
    with pytest.raises(ConfigError, match=f"is {name} of the run in .*; choose a path outside the run"):
        check_output(run_dir / name, flag="--export")
    link = tmp_path / "innocent.yaml"
    link.symlink_to(run_dir / name)
    with pytest.raises(ConfigError, match=f"is {name} of the run"):  # found through a symbolic link
        check_output(link, flag="--export")


def test_a_command_writes_only_the_files_of_the_run_it_owns(tmp_path):
    run_dir, other = _run(tmp_path / "run"), _run(tmp_path / "other")
    assert check_output(run_dir / "report.html", flag="--out", owner=run_dir, owns=("report.html",))
    assert check_output(run_dir / "plots", flag="--out", directory=True, owner=run_dir, owns=("plots",))
    with pytest.raises(ConfigError, match="is report.html of the run"):
        check_output(other / "report.html", flag="--out", owner=run_dir, owns=("report.html",))
    with pytest.raises(ConfigError, match="is run.db of the run"):
        check_output(run_dir / "run.db", flag="--out", owner=run_dir, owns=("report.html",))
    assert check_output(run_dir / "notes.txt", flag="--export")  # a file of the user's beside the run


def test_a_copy_of_a_run_database_is_not_written_over(tmp_path):
    run_dir = _run(tmp_path / "run")
    copy = tmp_path / "backup.db"
    copy.write_bytes((run_dir / "run.db").read_bytes())
    os.link(run_dir / "run.db", tmp_path / "hard-link.db")
    for path in (copy, tmp_path / "hard-link.db"):
        with pytest.raises(ConfigError, match="holds an evo run's database"):
            check_output(path, flag="--export")


@pytest.mark.parametrize(
    "path, message",
    [
        ("", "--export: an empty path"),
        ("   ", "--export: an empty path"),
        ("x" * 300, "a name of 300 bytes; the file system holds at most 255"),
        ("dir/" + "é" * 200 + ".yaml", "a name of 405 bytes"),
        ("afile/inside.yaml", "afile is a file, not a directory"),
        ("adir", "is a directory; name a file"),
    ],
)
def test_a_path_the_file_system_cannot_hold_is_one_line(tmp_path, monkeypatch, path, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    with pytest.raises(ConfigError, match=message):
        check_output(path, flag="--export")


def test_a_new_run_goes_only_into_a_new_or_empty_folder_or_one_a_killed_driver_left(tmp_path):
    assert check_new_run(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    check_new_run(tmp_path / "empty")
    unborn = tmp_path / "unborn"  # a driver killed inside the transaction that creates run.db
    unborn.mkdir()
    sqlite3.connect(unborn / "run.db").close()
    for name in ("config.yaml", ".lock", "run.db-wal"):
        (unborn / name).write_text("")
    check_new_run(unborn)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("# my config\n")
    with pytest.raises(StoreError, match="holds config.yaml, not a run of evo's"):
        check_new_run(mine)
    with pytest.raises(StoreError, match="already holds a run"):
        check_new_run(_run(tmp_path / "run"))


def test_runs_claiming_one_name_get_a_directory_each(tmp_path):
    base = tmp_path / "runs" / "config-20250101-120000"
    claimed = [claim_run_dir(base) for _ in range(3)]
    assert [p.name for p in claimed] == [base.name, f"{base.name}-2", f"{base.name}-3"]
    assert all(p.is_dir() for p in claimed)


# -- the one read-only open ------------------------------------------------------------------
def test_reading_a_run_creates_no_file_and_changes_no_byte(tmp_path):
    run_dir = _run(tmp_path / "run")
    before = _tree(run_dir)
    with RunStore.read(run_dir) as store:
        assert len(store.trials()) == 3
        with pytest.raises(StoreError, match="read-only"):
            store.set_meta("x", 1)
    assert _tree(run_dir) == before  # no -wal, no -shm, no .lock


def test_a_run_in_a_read_only_directory_is_read_and_never_called_damaged(tmp_path):
    run_dir = _run(tmp_path / "run")
    with read_only(run_dir):
        with RunStore.read(run_dir) as store:
            assert [t.values["loss"] for t in store.trials()] == [1.0, 2.0, 3.0]
        with pytest.raises(StoreError) as refused:  # a command that writes says why, without "damaged"
            with RunStore.open(run_dir) as store:
                store.set_meta("x", 1)
        assert "damaged" not in str(refused.value)


def test_a_read_sees_what_a_running_driver_committed(tmp_path):
    run_dir = _run(tmp_path / "run")
    with RunStore.open(run_dir) as driver:
        driver.lock()
        tid = driver.start_trial(fingerprint="fp", config_key="new", config={}, generation=1, seed=1)
        driver.finish_trial(tid, TrialResult.complete({"loss": 0.5}))
        assert (run_dir / "run.db-wal").exists()
        with RunStore.read(run_dir) as reader:
            assert [t.values["loss"] for t in reader.trials()][-1] == 0.5


# -- damage is named --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "statement, message",
    [
        ("DELETE FROM trials WHERE id = 2", "table individuals, row id 2: its trial 2 is missing from table trials"),
        ("UPDATE trials SET objective_values = '{oops' WHERE id = 2", r"table trials, row id 2: objective_values is"),
        ("UPDATE trials SET objective_values = '[1]' WHERE id = 2", r"table trials, row id 2: objective_values is"),
        ('UPDATE trials SET objective_values = \'{"loss": "a"}\' WHERE id = 2', r"objective_values\['loss'\]"),
        ("UPDATE trials SET status = 'exploded' WHERE id = 3", "table trials, row id 3: 'exploded' is not"),
        ("UPDATE trials SET reason = 'gremlins' WHERE id = 3", "table trials, row id 3: 'gremlins' is not"),
        ("UPDATE trials SET metrics = 'nope' WHERE id = 1", "table trials, row id 1: metrics is not JSON"),
        ("ALTER TABLE trials DROP COLUMN metrics", "table trials has no column metrics"),
        ("DROP TABLE generations", "table generations is missing"),
        ("UPDATE individuals SET genome = '{' WHERE id = 1", "table individuals, row id 1"),
        ("UPDATE individuals SET parents = '3' WHERE id = 1", "table individuals, row id 1: parents"),
        ("DELETE FROM individuals WHERE id = 1", "table populations, generation 0 rank 0: its individual 1 is missing"),
        ("UPDATE generations SET stats = 'x'", "table generations, generation 0: stats is not JSON"),
        ("UPDATE meta SET value = '{' WHERE key = 'config'", "table meta, key config: not JSON"),
    ],
)
def test_a_damaged_row_is_one_line_naming_its_table_and_row(tmp_path, statement, message):
    run_dir = _run(tmp_path / "run")
    with sqlite3.connect(run_dir / "run.db") as db:
        db.execute(statement)
    for opening in (RunStore.read, RunStore.open):
        with pytest.raises(StoreError, match=message) as damaged:  # tables and references at opening
            with opening(run_dir) as store:
                store.verify()  # rows where they are decoded: every one here
        assert str(damaged.value).startswith(f"{run_dir}: run.db is damaged: ") and "\n" not in str(damaged.value)


def test_a_file_that_is_no_database_is_damaged_and_an_unreadable_one_is_not(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "run.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="run.db is not a run database"):
        RunStore.read(tmp_path / "junk")


# -- a full disk -------------------------------------------------------------------------------
def test_a_full_disk_is_one_line_saying_what_run_db_keeps(tmp_path):
    """SQLite's own SQLITE_FULL: the database may not grow past its pages, as on a full disk."""
    run_dir = _run(tmp_path / "run")
    with RunStore.open(run_dir) as store:
        store.lock()
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages + 1}")
        with pytest.raises(DiskFull) as full:
            for n in range(1000):  # each trial adds a row, until a page is needed and there is none
                tid = store.start_trial(fingerprint="fp", config_key="k" * 500, config={"n": n}, generation=1, seed=n)
                store.finish_trial(tid, TrialResult.complete({"loss": 1.0}))
    with RunStore.read(run_dir) as store:  # consistent: the failed transaction was rolled back
        kept = [t for t in store.trials() if t.status.value != "running"]
    assert str(full.value).startswith(f"the disk is full: writing {run_dir / 'run.db'} (database or disk is full)")
    assert f"run.db keeps the {len(kept)} trials finished before it" in str(full.value)


def test_every_file_a_command_writes_goes_through_the_guard():
    """Outside evo/storage (the run's own files, and write_output, which commands call once
    check_output passed), only the figures write, to paths plot_run and evo compare checked.
    A new write elsewhere must go through check_output and write_output."""
    import re

    writes = re.compile(r"\.write_text\(|\.write_bytes\(|\.savefig\(|open\([^)]*['\"][wax]b?['\"]")
    allowed = {"evo/reporting/plots"}
    found = []
    for path in sorted((ROOT / "evo").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("evo/storage/") or any(relative.startswith(a) for a in allowed):
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if writes.search(line) and "os.devnull" not in line:
                found.append(f"{relative}:{number}: {line.strip()}")
    assert found == []
