"""Experiment trackers: TensorBoard event files, MLflow's local store, W&B offline."""

import importlib.util
import re

import pytest

from evo.cli import main
from evo.config import REPORT_TO, parse_config
from evo.reporting._trackers import BACKENDS, make_trackers
from evo.storage import RunStore
from evo.trial import ConfigError


def run_with(synthetic_config, write_config, tmp_path, backends):
    synthetic_config["report_to"] = backends
    synthetic_config["evolution"]["generations"] = 2
    run_dir = tmp_path / "run"
    assert main(["run", str(write_config(synthetic_config)), "--out", str(run_dir), "--quiet", "--no-plots"]) == 0
    return run_dir


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard extra not installed")
def test_tensorboard_event_files_hold_trials_and_generations(synthetic_config, write_config, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = run_with(synthetic_config, write_config, tmp_path, ["tensorboard"])
    events = EventAccumulator(str(run_dir / "trackers" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"trial/val_perplexity", "trial/failed", "generation/best", "generation/diversity"} <= tags
    with RunStore.open(run_dir) as store:
        trials = {t.id: t for t in store.trials()}
        stats = store.generation_stats()
    logged = {e.step: e.value for e in events.Scalars("trial/val_perplexity")}
    assert logged == pytest.approx({i: t.values["val_perplexity"] for i, t in trials.items() if t.ok})
    assert [e.value for e in events.Scalars("generation/best")] == pytest.approx([s["best"] for s in stats])


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow extra not installed")
def test_mlflow_local_store_holds_the_metrics(synthetic_config, write_config, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_dir = run_with(synthetic_config, write_config, tmp_path, ["mlflow"])
    import mlflow

    client = mlflow.tracking.MlflowClient((run_dir / "trackers" / "mlruns").resolve().as_uri())
    (experiment,) = [e for e in client.search_experiments() if e.name == "evo"]
    (run,) = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(run.info.run_id, "generation.best")
    with RunStore.open(run_dir) as store:
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
            [s["best"] for s in store.generation_stats()]
        )
    assert run.data.params["population_size"] == "6"


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb extra not installed")
def test_wandb_offline_run_is_written(synthetic_config, write_config, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = run_with(synthetic_config, write_config, tmp_path, ["wandb"])
    runs = list((run_dir / "trackers" / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb"))  # the offline run log that 'wandb sync' uploads


def test_unknown_or_missing_backend_is_a_config_error(synthetic_config, write_config, tmp_path, capsys, monkeypatch):
    synthetic_config["report_to"] = ["comet"]
    with pytest.raises(ConfigError, match="report_to: unknown backend 'comet'"):
        parse_config(synthetic_config)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    synthetic_config["report_to"] = ["wandb"]
    missing = r"report_to: wandb is not installed; pip install 'evo-qlora\[wandb\]'"
    with pytest.raises(ConfigError, match=missing):  # the config is a leaf: trackers check what is installed
        make_trackers(parse_config(synthetic_config).report_to)
    run_dir = tmp_path / "run"
    assert main(["run", str(write_config(synthetic_config)), "--out", str(run_dir), "--quiet", "--no-plots"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(missing, err[0]), err
    assert not run_dir.exists()


def test_the_config_knows_every_tracker_backend():
    assert set(REPORT_TO) == set(BACKENDS) | {"auto", "optuna"}  # those two: the engine's Optuna mirror
