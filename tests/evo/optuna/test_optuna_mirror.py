"""The Optuna mirror: every strategy's run has a journal Optuna loads with the same trials as
run.db, kept exact across a SIGKILL between the store's commit and the journal's write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from evo import RunStore, parse_config, start_run
from evo.cli import main
from evo.evaluation import stored_objectives
from evo.optuna._mirror import (
    JOURNAL,
    TRIAL_ID,
    decode_params,
    distribution,
    encode_choice,
    journal_path,
    study_name,
    sync,
)
from evo.run import load_stored_config
from evo.space import SearchSpace
from evo.trial import ConfigError, TrialStatus
from fitness import export_sections, make_fitness
from tests.conftest import ROOT, SMALL_SPACE
from tests.evo.strategies.test_strategies_unchanged import SCENARIOS

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _load(run_dir: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(run_dir / JOURNAL)))
    return optuna.load_study(study_name=study_name(run_dir), storage=storage)


def _assert_mirrors(run_dir: Path) -> optuna.Study:
    """The journal holds each finished trial of run.db once, complete ones with their values."""
    study = _load(run_dir)
    with RunStore.open(run_dir) as store:
        finished = [t for t in store.trials() if t.status is not TrialStatus.RUNNING]
        names = [o["name"] for o in store.meta("objectives")]
    ids = [t.user_attrs[TRIAL_ID] for t in study.trials]
    assert sorted(ids) == [t.id for t in finished]  # every trial, none twice
    by_id = {t.user_attrs[TRIAL_ID]: t for t in study.trials}
    complete = [t for t in finished if t.ok and t.full]
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == len(complete)
    for record in complete:
        assert by_id[record.id].values == [record.values[n] for n in names]
    return study


def _best(run_dir: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["best", str(run_dir)]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def _as_evo_best_prints(run_dir: Path, trial: optuna.trial.FrozenTrial) -> dict:
    """An Optuna trial's params as ``evo best`` prints a trial: its config with these genes,
    in the fitness's export sections, with its id and objectives."""
    with RunStore.open(run_dir) as store:
        record = store.trial(trial.user_attrs[TRIAL_ID])
        config = load_stored_config(store)
        names = [o.name for o in stored_objectives(store)]
    genes = decode_params(config.space, trial.params)
    return {
        "trial_id": record.id,
        "objectives": dict(zip(names, trial.values)),
        **export_sections(config.fitness, {**(record.applied_config or record.config), **genes}),
    }


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_strategy_has_a_journal_optuna_loads_with_the_same_trials_and_best(name, tmp_path, capsys):
    config = parse_config(SCENARIOS[name]())
    run_dir = tmp_path / "run"
    result = start_run(config, make_fitness(config.fitness), run_dir)
    study = _assert_mirrors(run_dir)
    space = config.space
    best = _best(run_dir, capsys)
    if len(study.directions) == 1:  # Optuna's best trial is the one evo best prints, params and value
        assert study.best_value == pytest.approx(next(iter(best["objectives"].values())))
        schedule = best.pop("pbt_schedule", None)  # PBT: the segments' configs, chained by continued_checkpoint_of
        assert _as_evo_best_prints(run_dir, study.best_trial) == best
        assert (schedule is not None) == (name == "pbt")
        genes = {k: v for k, v in result.best_trials[0].config.items() if k in space.genes}
        assert decode_params(space, study.best_trial.params) == genes
    else:  # two objectives: Optuna's Pareto front is the one evo best prints
        assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
        front = sorted(t.user_attrs[TRIAL_ID] for t in study.best_trials)
        assert front == sorted(t.id for t in result.best_trials)
        by_id = sorted(study.best_trials, key=lambda t: t.user_attrs[TRIAL_ID])
        shown = sorted(best["pareto_front"], key=lambda e: e["trial_id"])
        assert [_as_evo_best_prints(run_dir, t) for t in by_id] == shown
        assert study.metric_names == ["val_perplexity", "trainable_parameters"]
    origins = {t.user_attrs.get("origin") for t in study.trials}
    assert origins <= {"bred", "immigrant", "initial", "warm_start", "baseline", "continue", "exploit", None}
    bred = [t for t in study.trials if t.user_attrs.get("origin") == "bred"]
    if name != "pbt":
        assert bred and all(t.user_attrs["parents"] for t in bred)


def test_states_curves_fidelity_and_checkpoints_are_mirrored(tmp_path):
    config = parse_config(SCENARIOS["multi_fidelity"]())
    start_run(config, make_fitness(config.fitness), tmp_path / "run")
    trials = _load(tmp_path / "run").trials
    partial = [t for t in trials if t.user_attrs["fidelity"] < 1]
    assert partial and all(t.state is optuna.trial.TrialState.PRUNED for t in partial)
    assert all(t.user_attrs["reason"].startswith("partial budget") for t in partial)
    assert any("continued_checkpoint_of" in t.user_attrs for t in trials)
    assert all(t.intermediate_values for t in trials if t.state is optuna.trial.TrialState.COMPLETE)

    config = parse_config(SCENARIOS["early_stopping"]())
    start_run(config, make_fitness(config.fitness), tmp_path / "stopped")
    pruned = [t for t in _load(tmp_path / "stopped").trials if t.state is optuna.trial.TrialState.PRUNED]
    assert pruned and all(t.user_attrs["reason"].startswith("early stopping") for t in pruned)


def test_failed_trials_and_the_baseline_keep_their_reason_and_origin(tmp_path, synthetic_config):
    synthetic_config["fitness"]["failure_rate"] = 0.3
    synthetic_config["baseline"] = {"learning_rate": 1e-4, "r": 8}
    config = parse_config(synthetic_config)
    start_run(config, make_fitness(config.fitness), tmp_path / "run")
    trials = _assert_mirrors(tmp_path / "run").trials
    failed = [t for t in trials if t.state is optuna.trial.TrialState.FAIL]
    with RunStore.open(tmp_path / "run") as store:
        reasons = {t.id: f"{t.reason.value}: {t.message}" for t in store.trials() if t.status is TrialStatus.FAILED}
    assert failed and {t.user_attrs[TRIAL_ID]: t.user_attrs["reason"] for t in failed} == reasons
    assert any(r.startswith("exception: RuntimeError: synthetic failure") for r in reasons.values())
    assert [t.user_attrs["generation"] for t in trials if t.user_attrs.get("origin") == "baseline"] == [-1]


def test_list_valued_choices_round_trip():
    space = SearchSpace.from_spec(SMALL_SPACE)
    dist = distribution(space.genes["target_modules"])
    assert dist.choices == ("attention", "all-linear", '["q_proj","v_proj"]')
    encoded = encode_choice(["q_proj", "v_proj"])
    assert decode_params(space, {"target_modules": encoded}) == {"target_modules": ["q_proj", "v_proj"]}
    assert distribution(space.genes["learning_rate"]).log
    assert distribution(space.genes["lora_alpha"]).step == 8
    assert distribution(space.genes["use_rslora"]).choices == (False, True)


def test_a_missing_or_stale_journal_is_rebuilt_without_duplicates(tmp_path, synthetic_config):
    synthetic_config["report_to"] = "none"
    config = parse_config(synthetic_config)
    start_run(config, make_fitness(config.fitness), tmp_path / "run")
    assert not journal_path(tmp_path / "run").exists()  # report_to: none writes no journal
    assert sync(tmp_path / "run") > 0
    assert sync(tmp_path / "run") == 0  # up to date: nothing added twice
    _assert_mirrors(tmp_path / "run")


def test_report_to_optuna_without_optuna_is_a_config_error(tmp_path, synthetic_config, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    synthetic_config["report_to"] = ["optuna"]
    config = parse_config(synthetic_config)
    with pytest.raises(ConfigError, match=r"report_to: optuna is not installed; pip install 'evo-qlora\[dashboard\]'"):
        start_run(config, make_fitness(config.fitness), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    synthetic_config["report_to"] = "auto"  # the default only mirrors where it can
    config = parse_config(synthetic_config)
    start_run(config, make_fitness(config.fitness), tmp_path / "auto")
    assert not journal_path(tmp_path / "auto").exists()


def test_an_optuna_older_than_4_is_named_and_auto_skips_the_mirror(tmp_path, synthetic_config, monkeypatch):
    import importlib.metadata

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "3.6.1" if name == "optuna" else real(name))
    synthetic_config["report_to"] = ["optuna"]
    config = parse_config(synthetic_config)
    with pytest.raises(ConfigError, match=r"^report_to: optuna needs Optuna 4 or later \(found 3\.6\.1\); pip install"):
        start_run(config, make_fitness(config.fitness), tmp_path / "run")
    synthetic_config["report_to"] = "auto"  # no journal its Optuna cannot write; the run goes on
    config = parse_config(synthetic_config)
    start_run(config, make_fitness(config.fitness), tmp_path / "auto")
    assert not journal_path(tmp_path / "auto").exists()


def test_evo_imports_without_optuna():
    code = (
        "import sys; sys.modules['optuna'] = None\n"  # import optuna now raises ImportError
        "import evo, evo.cli, evo.optuna._mirror\n"
        "assert 'optuna' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


KILLER = """
import os, signal, sys
from pathlib import Path
from evo.optuna import _mirror as _optuna_mirror
from evo.run import _api
from evo.config import parse_config
from evo.storage import RunStore, StoreError
from fitness import export_sections, make_fitness
import json

run_dir, kill_at = Path(sys.argv[1]), int(sys.argv[2])
written = 0
original = _optuna_mirror.OptunaMirror.write

def write(self, record):  # the trial is committed in run.db; the journal has not got it
    global written
    written += 1
    if written == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    original(self, record)

_optuna_mirror.OptunaMirror.write = write
try:
    RunStore.check_new(run_dir)
    config = parse_config(json.loads(Path(sys.argv[3]).read_text()))
    _api.start_run(config, make_fitness(config.fitness), run_dir)
except StoreError:
    with RunStore.open(run_dir) as store:
        config = _api.load_stored_config(store)
    _api.resume_run(run_dir, make_fitness(config.fitness))
"""


@pytest.mark.parametrize("name", ["generational_tpe", "steady_state", "pbt"])
def test_a_kill_between_the_stores_commit_and_the_journals_write_is_caught_up_on_resume(name, tmp_path):
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(SCENARIOS[name]()))
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for kill_at in (7, 5, 0):  # two kills, then a resume to the end
        done = subprocess.run(
            [sys.executable, "-c", KILLER, str(run_dir), str(kill_at), str(config_file)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == (-9 if kill_at else 0), done.stderr[-2000:]
        if kill_at:  # killed: run.db holds a trial the journal lacks
            with RunStore.open(run_dir) as store:
                finished = {t.id for t in store.trials() if t.status is not TrialStatus.RUNNING}
            assert len(_load(run_dir).trials) < len(finished)
    _assert_mirrors(run_dir)
