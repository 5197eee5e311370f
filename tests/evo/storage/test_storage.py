"""The run store: one contract, held by the in-memory and the on-disk store alike;
then what only a run directory has (migrations, the lock, its files)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from evo.storage import (
    BASELINE_GENERATION,
    IMPORTED_GENERATION,
    SCHEMA_VERSION,
    RunDirInUse,
    RunFiles,
    RunStore,
    StoreError,
)
from evo.trial import Direction, FailureReason, Objective, TrialResult, TrialStatus

CONFIG = {"seed": 1, "fitness": {"type": "synthetic"}, "budget": {"steps": 10}}
OBJECTIVES = (Objective("loss"), Objective("params", Direction.MAXIMIZE))


def _trial(store: RunStore, key: str = "k", generation: int = 0, fingerprint: str = "fp", **kw) -> int:
    return store.start_trial(
        fingerprint=fingerprint, config_key=key, config={"lr": key}, generation=generation, seed=7, **kw
    )


class StoreContract:
    """What every RunStore does, wherever it keeps the run. Subclasses give ``store``."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[RunStore]:
        raise NotImplementedError

    def test_create_writes_the_run_meta(self, store: RunStore) -> None:
        assert store.meta("schema_version") == SCHEMA_VERSION
        assert store.meta("created_at") > 0
        assert store.meta("config") == CONFIG
        assert store.meta("fingerprint") == "fp"
        assert store.meta("objectives") == [
            {"name": "loss", "direction": "minimize"},
            {"name": "params", "direction": "maximize"},
        ]
        assert store.meta("environment") == {"python": "3"}
        assert store.meta("warm_start_genomes") == [{"lr": 0.1}]

    def test_meta_round_trips_json_and_has_a_default(self, store: RunStore) -> None:
        store.set_meta("state", {"a": [1, 2.5, None], "b": "x"})
        assert store.meta("state") == {"a": [1, 2.5, None], "b": "x"}
        assert store.meta("missing") is None and store.meta("missing", 3) == 3

    def test_individuals_are_added_and_read_back_by_generation(self, store: RunStore) -> None:
        added = store.add_individuals(0, [({"lr": 0.1}, "random", []), ({"lr": 0.2}, "seed", [])])
        assert [(r.slot, r.genome, r.origin, r.trial_id) for r in added] == [
            (0, {"lr": 0.1}, "random", None),
            (1, {"lr": 0.2}, "seed", None),
        ]
        later = store.add_individuals(1, [({"lr": 0.3}, "mutation", [added[0].id])], first_slot=4)
        assert (later[0].slot, later[0].parents) == (4, [added[0].id])
        assert [r.generation for r in store.individuals()] == [0, 0, 1]
        assert store.individuals(2) == []

    def test_trials_start_running_and_finish_linked_to_their_individual(self, store: RunStore) -> None:
        (ind,) = store.add_individuals(0, [({"lr": 0.1}, "random", [])])
        tid = _trial(store, fidelity=0.5, resumed_from=None)
        running = store.trial(tid)
        assert running.status is TrialStatus.RUNNING and running.fidelity == 0.5 and not running.full
        store.finish_trial(tid, TrialResult.complete({"loss": 1.5}, metrics={"steps": 5}), ind.id)
        done = store.trial(tid)
        assert done.ok and done.values == {"loss": 1.5} and done.metrics == {"steps": 5}
        assert done.duration is not None and done.finished_at >= done.started_at
        assert store.individuals(0)[0].trial_id == tid
        other = _trial(store, "k2")
        store.link(ind.id, other)
        assert store.individuals(0)[0].trial_id == other
        assert [t.id for t in store.trials()] == [tid, other] and [t.id for t in store.trials(0)] == [tid, other]

    @pytest.mark.parametrize(
        ("result", "reusable"),
        [
            (TrialResult.complete({"loss": 1.0}), True),
            (TrialResult.failed(FailureReason.DIVERGED, "nan"), True),
            (TrialResult.failed(FailureReason.OOM, "oom"), False),
            (TrialResult.failed(FailureReason.TIMEOUT, "slow"), False),
            (TrialResult.failed(FailureReason.KILLED, "signal"), False),
        ],
    )
    def test_find_reusable_only_trusts_outcomes_of_the_config_itself(
        self, store: RunStore, result: TrialResult, reusable: bool
    ) -> None:
        tid = _trial(store)
        assert store.find_reusable("fp", "k") is None  # running
        store.finish_trial(tid, result)
        found = store.find_reusable("fp", "k")
        assert (found.id if found else None) == (tid if reusable else None)
        assert store.find_reusable("other-fp", "k") is None

    def test_copy_trial_lands_in_the_imported_generation(self, store: RunStore) -> None:
        tid = _trial(store)
        store.finish_trial(tid, TrialResult.complete({"loss": 2.0}, applied_config={"lr": 1}))
        copy = store.trial(store.copy_trial(store.trial(tid), fingerprint="fp2", config_key="k", note="from x"))
        assert copy.generation == IMPORTED_GENERATION < BASELINE_GENERATION
        assert (copy.values, copy.applied_config, copy.message, copy.duration) == (
            {"loss": 2.0},
            {"lr": 1},
            "from x",
            0,
        )
        assert store.find_reusable("fp2", "k").id == copy.id

    def test_interrupt_running_marks_trials_in_flight_killed(self, store: RunStore) -> None:
        running, finished = _trial(store, "a"), _trial(store, "b")
        store.finish_trial(finished, TrialResult.complete({"loss": 1.0}))
        assert store.interrupt_running() == 1
        killed = store.trial(running)
        assert killed.status is TrialStatus.FAILED and killed.reason is FailureReason.KILLED
        assert store.trial(finished).ok and store.interrupt_running() == 0

    def test_finished_generations_keep_their_population_and_stats(self, store: RunStore) -> None:
        a, b = store.add_individuals(0, [({"lr": 0.1}, "random", []), ({"lr": 0.2}, "random", [])])
        store.finish_generation(0, [b.id, a.id], {"gen": 0, "best": 1.0}, "123")
        store.finish_generation(1, [a.id], {"gen": 1, "best": 0.5}, "456")
        store.finish_generation(1, [b.id], {"gen": 1, "best": 0.4}, "456")  # rewritten on a replay
        assert [r.id for r in store.population(0)] == [b.id, a.id]
        assert [r.id for r in store.population(1)] == [b.id]
        assert store.finished_generations() == [0, 1]
        assert store.generation_stats() == [{"gen": 0, "best": 1.0}, {"gen": 1, "best": 0.4}]


class TestInMemoryStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[RunStore]:
        with _create(None) as store:
            assert store.run_dir is None
            yield store


class TestOnDiskStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[RunStore]:
        with _create(tmp_path / "run") as store:
            assert (tmp_path / "run" / "config.yaml").is_file()
            yield store


def _create(run_dir: Path | None, config: dict | None = None) -> RunStore:
    return RunStore.create(
        run_dir,
        config=CONFIG if config is None else config,
        fingerprint="fp",
        objectives=OBJECTIVES,
        environment={"python": "3"},
        warm_start=[{"lr": 0.1}],
    )


# -- only a run directory --------------------------------------------------------------
V1_DDL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE trials (
    id INTEGER PRIMARY KEY, fingerprint TEXT NOT NULL, config_key TEXT NOT NULL, config TEXT NOT NULL,
    generation INTEGER NOT NULL, seed INTEGER NOT NULL, status TEXT NOT NULL, reason TEXT,
    message TEXT NOT NULL DEFAULT '', objective_values TEXT NOT NULL DEFAULT '{}',
    metrics TEXT NOT NULL DEFAULT '{}', applied_config TEXT, started_at REAL NOT NULL,
    finished_at REAL, duration REAL
);
CREATE INDEX trials_by_config ON trials (fingerprint, config_key);
CREATE TABLE individuals (
    id INTEGER PRIMARY KEY, generation INTEGER NOT NULL, slot INTEGER NOT NULL, genome TEXT NOT NULL,
    origin TEXT NOT NULL, parents TEXT NOT NULL DEFAULT '[]', trial_id INTEGER REFERENCES trials (id),
    UNIQUE (generation, slot)
);
CREATE TABLE populations (
    generation INTEGER NOT NULL, rank INTEGER NOT NULL, individual_id INTEGER NOT NULL REFERENCES individuals (id),
    PRIMARY KEY (generation, rank)
);
CREATE TABLE generations (
    generation INTEGER PRIMARY KEY, seed_entropy TEXT NOT NULL, finished_at REAL NOT NULL, stats TEXT NOT NULL
);
CREATE TABLE events (id INTEGER PRIMARY KEY, at REAL NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL);
"""
V2_DDL = V1_DDL.replace(
    "finished_at REAL, duration REAL\n",
    "finished_at REAL, duration REAL, fidelity REAL NOT NULL DEFAULT 1.0, resumed_from INTEGER\n",
)


def _old_run(run_dir: Path, ddl: str, version: object) -> Path:
    run_dir.mkdir()
    db = sqlite3.connect(run_dir / "run.db")
    db.executescript(ddl)
    db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(version),))
    db.execute("INSERT INTO meta VALUES ('fingerprint', '\"fp\"')")
    db.execute(
        "INSERT INTO trials (fingerprint, config_key, config, generation, seed, status, objective_values,"
        " started_at, finished_at, duration) VALUES ('fp', 'k', '{}', 0, 1, 'complete', '{\"loss\": 1}', 1, 2, 1)"
    )
    db.execute("INSERT INTO events (at, kind, message) VALUES (1, 'note', 'never read')")
    db.commit()
    db.close()
    return run_dir


def _tables(run_dir: Path) -> set[str]:
    with sqlite3.connect(run_dir / "run.db") as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


@pytest.mark.parametrize("ddl, version", [(V1_DDL, 1), (V2_DDL, 2)], ids=["v1", "v2"])
def test_an_old_run_dir_is_migrated_to_the_current_schema(tmp_path: Path, ddl: str, version: int) -> None:
    run_dir = _old_run(tmp_path / "old", ddl, version)
    with RunStore.open(run_dir) as store:
        assert store.meta("schema_version") == SCHEMA_VERSION == 5
        (trial,) = store.trials()
        assert trial.ok and trial.full and trial.resumed_from is None and trial.values == {"loss": 1}
        assert store.find_reusable("fp", "k") == trial
    assert "events" not in _tables(run_dir)
    with RunStore.open(run_dir) as store:  # opening again changes nothing
        assert store.meta("schema_version") == SCHEMA_VERSION


def test_a_schema_4_run_calls_its_first_population_a_warm_start(tmp_path: Path) -> None:
    """0.1 stored a warm start as "seed" genomes and origins; 0.2 reserves "seed" for the random seed."""
    with _create(tmp_path / "v4") as store:
        store.add_individuals(0, [({"lr": 0.1}, "warm_start", []), ({"lr": 0.2}, "init", [])])
    with sqlite3.connect(tmp_path / "v4" / "run.db") as db:  # back to what 0.1 wrote
        db.execute("UPDATE meta SET key = 'seed_genomes' WHERE key = 'warm_start_genomes'")
        db.execute("INSERT INTO meta VALUES ('seeded_from', '\"/runs/old\"')")
        db.execute("UPDATE individuals SET origin = 'seed' WHERE origin = 'warm_start'")
        db.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    with RunStore.open(tmp_path / "v4") as store:
        assert store.meta("schema_version") == 5
        assert store.meta("warm_start_genomes") == [{"lr": 0.1}] and store.meta("seed_genomes") is None
        assert store.meta("warm_started_from") == "/runs/old"
        assert [i.origin for i in store.individuals(0)] == ["warm_start", "init"]


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 0, '"x"'])
def test_an_unknown_schema_version_is_refused_naming_the_dir(tmp_path: Path, version: object) -> None:
    run_dir = _old_run(tmp_path / "future", V2_DDL, version)
    with pytest.raises(StoreError, match=f"{run_dir}.*schema"):
        RunStore.open(run_dir)
    assert "events" in _tables(run_dir)  # left as it was


def test_a_missing_or_taken_run_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a run directory"):
        RunStore.open(tmp_path / "nothing")
    _create(tmp_path / "run").close()
    with pytest.raises(StoreError, match="already holds a run"):
        _create(tmp_path / "run")


def test_the_lock_refuses_a_second_driver_until_the_first_closes(tmp_path: Path) -> None:
    first = _create(tmp_path / "run")  # create takes the lock
    second = RunStore.open(tmp_path / "run")
    with pytest.raises(RunDirInUse, match="another evo driver"):
        second.lock()
    first.close()
    second.lock()
    second.lock()  # idempotent
    second.close()


def test_run_files_keep_the_best_trials_artifacts_and_the_asked_checkpoints(tmp_path: Path) -> None:
    with _create(tmp_path / "run") as store:
        files = RunFiles(store, "best")
        for key, loss in (("a", 2.0), ("b", 1.0), ("c", 3.0)):
            tid = _trial(store, key)
            store.finish_trial(tid, TrialResult.complete({"loss": loss}))
            artifacts = files.artifact_dir(tid)
            artifacts.mkdir(parents=True)
            (artifacts / "adapter").write_text(key)
            files.keep_artifacts(store.trial(tid), artifacts, OBJECTIVES[0])
        assert (tmp_path / "run" / "best" / "adapter").read_text() == "b"
        assert store.meta("best_artifacts")["trial_id"] == 2
        assert not (tmp_path / "run" / "trials").exists()
        for tid in (1, 2, 3):
            files.checkpoint_dir(tid).mkdir(parents=True)
        files.keep_checkpoints([2])
        assert [p.name for p in files.checkpoints.iterdir()] == ["2"]
        files.keep_checkpoints()
        assert not files.checkpoints.exists()
        assert RunFiles(store, "none").artifact_dir(1) is None
    with _create(None) as memory:
        assert RunFiles(memory).artifact_dir(1) is None
        assert RunFiles(memory).checkpoint_dir(1).parent.is_dir()  # a temporary directory


def test_migration_restores_the_gene_order_the_config_was_written_in(tmp_path: Path) -> None:
    """Stores before schema 3 sorted the config's keys, so a resumed run bred with its
    genes in alphabetical order; config.yaml keeps the order they were written in."""
    run_dir = _old_run(tmp_path / "old", V2_DDL, 2)
    written = {"seed": 0, "search_space": {"r": {"type": "bool"}, "learning_rate": {"type": "bool"}}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(written, sort_keys=False))
    with sqlite3.connect(run_dir / "run.db") as db:
        db.execute("INSERT INTO meta VALUES ('config', ?)", (json.dumps(written, sort_keys=True),))
    with RunStore.open(run_dir) as store:
        assert list(store.meta("config")["search_space"]) == ["r", "learning_rate"]


def test_a_new_run_keeps_the_order_of_its_config(tmp_path: Path) -> None:
    config = {"search_space": {"r": {"type": "bool"}, "a": {"type": "bool"}}, "budget": {"steps": 1}}
    _create(tmp_path / "run", config=config).close()
    with RunStore.open(tmp_path / "run") as store:
        assert list(store.meta("config")) == ["search_space", "budget"]
        assert list(store.meta("config")["search_space"]) == ["r", "a"]


def test_migration_moves_steady_state_entries_out_of_meta(tmp_path: Path) -> None:
    run_dir = _old_run(tmp_path / "old", V2_DDL, 3)
    with sqlite3.connect(run_dir / "run.db") as db:
        db.execute("DROP TABLE events")  # as schema 3 had it
        for slot in range(3):  # the individuals that entered
            db.execute(
                "INSERT INTO individuals (generation, slot, genome, origin) VALUES (0, ?, ?, 'init')",
                (slot, json.dumps({"v": 1, "genes": {}})),
            )
        db.execute(
            "INSERT INTO meta VALUES ('steady_state', ?)", (json.dumps({"population": [3, 1], "entered": [1, 3, 2]}),)
        )
    with RunStore.open(run_dir) as store:
        assert store.entries() == [1, 3, 2]
        assert store.meta("steady_state") == {"population": [3, 1]}
        assert store.meta("schema_version") == SCHEMA_VERSION


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_entries_keep_their_order_and_the_population_left_behind(tmp_path: Path, where: str) -> None:
    store = _create(None if where == "memory" else tmp_path / "run")
    for individual, population in ((5, [5]), (2, [5, 2]), (9, [9, 5])):
        store.enter(individual, "steady_state", population)
    assert store.entries() == [5, 2, 9]
    assert store.meta("steady_state") == {"population": [9, 5]}
    store.close()
