"""Sending a run's metrics to the experiment trackers users already watch.

``report_to: [tensorboard, mlflow, wandb]`` in the run config, as in TrainingArguments.
Each trial's values and numeric metrics are logged at its trial number, each
generation's statistics at its generation number. Every backend is an optional
extra; asking for one that is not installed is a one-line config error at start.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evo.evaluation import RunInfo, RunObserver
from evo.storage import TrialRecord
from evo.trial import ConfigError, TrialStatus

BACKENDS = {  # name -> (module to import, pip extra); the names are evo.config.REPORT_TO
    "tensorboard": ("tensorboardX", "tensorboard"),
    "mlflow": ("mlflow", "mlflow"),
    "wandb": ("wandb", "wandb"),
}
STAT_KEYS = ("best", "median", "mean", "worst", "std", "diversity", "evals", "cached", "failed")


def make_trackers(names: Sequence[str]) -> list[RunObserver]:
    """The trackers ``report_to`` names (validated by the config against ``REPORT_TO``).

    Called at run start, before anything is written: a backend that is not installed is a
    one-line config error naming its extra.
    """
    names = [n for n in names if n in BACKENDS]  # auto and optuna: the engine's mirror (evo.optuna._mirror)
    for name in names:
        module, extra = BACKENDS[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"report_to: {name} is not installed; pip install 'evo-qlora[{extra}]'")
    kinds = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker, "wandb": WandbTracker}
    return [kinds[name]() for name in names]


def trial_scalars(record: TrialRecord) -> dict[str, float]:
    """Objective values (of a completed trial: a stopped one's are intermediate, not comparable)
    and the numeric top-level metrics of a finished trial."""
    out = {f"trial/{k}": float(v) for k, v in record.values.items()} if record.ok else {}
    for key, value in record.metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"trial/{key}"] = float(value)
    out["trial/failed"] = 1.0 if record.status is TrialStatus.FAILED else 0.0
    out["trial/pruned"] = 1.0 if record.status is TrialStatus.PRUNED else 0.0
    if record.duration is not None:
        out["trial/duration_s"] = float(record.duration)
    return out


def generation_scalars(stats: Mapping[str, Any]) -> dict[str, float]:
    return {f"generation/{k}": float(stats[k]) for k in STAT_KEYS if stats.get(k) is not None}


def _run_params(run: RunInfo) -> dict[str, Any]:
    raw = run.config.raw
    return {"seed": raw.get("seed"), "fitness": raw.get("fitness", {}).get("type"), **raw.get("evolution", {})}


class _Tracker(RunObserver):
    """Counts trials; subclasses send scalars."""

    def start(self, run: RunInfo) -> None:
        self.run = run
        self.trials_seen = 0
        self.dir = (run.run_dir or Path(".")) / "trackers"
        self.open(run)

    def trial(self, record: TrialRecord, cached: bool) -> None:
        if cached:
            return
        self.trials_seen += 1
        self.log(trial_scalars(record), step=record.id)

    def generation_done(self, stats: Mapping[str, Any]) -> None:
        self.log(generation_scalars(stats), step=int(stats["gen"]))

    def open(self, run: RunInfo) -> None: ...
    def log(self, scalars: Mapping[str, float], step: int) -> None: ...


class TensorBoardTracker(_Tracker):
    """Event files under RUN_DIR/trackers/tensorboard (``tensorboard --logdir`` there)."""

    def open(self, run: RunInfo) -> None:
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(logdir=str(self.dir / "tensorboard"))
        self.writer.add_text("config", f"```\n{run.config.raw}\n```", 0)

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def end(self) -> None:
        self.writer.close()


class MLflowTracker(_Tracker):
    """One MLflow run per evolutionary run; the tracking URI is MLflow's own setting
    (``MLFLOW_TRACKING_URI``), a local store under RUN_DIR/trackers/mlruns otherwise."""

    def open(self, run: RunInfo) -> None:
        import mlflow

        if not os.environ.get("MLFLOW_TRACKING_URI"):
            # A plain local store needs no database server (MLflow 3 asks for this opt-in).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri((self.dir / "mlruns").resolve().as_uri())
        mlflow.set_experiment("evo")
        self.mlflow = mlflow
        self.active = mlflow.start_run(run_name=(run.run_dir.name if run.run_dir else "evo"))
        mlflow.log_params({k: v for k, v in _run_params(run).items() if v is not None})

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        self.mlflow.log_metrics({k.replace("/", "."): v for k, v in scalars.items()}, step=step)

    def end(self) -> None:
        self.mlflow.end_run()


class WandbTracker(_Tracker):
    """A W&B run; ``WANDB_MODE=offline`` keeps it on disk under RUN_DIR/trackers/wandb."""

    def open(self, run: RunInfo) -> None:
        import wandb

        (self.dir / "wandb").mkdir(parents=True, exist_ok=True)
        self.wandb = wandb
        self.active = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "evo"),
            name=run.run_dir.name if run.run_dir else None,
            dir=str(self.dir / "wandb"),
            config=_run_params(run),
        )
        self.active.define_metric("trial/*", step_metric="trial/id")
        self.active.define_metric("generation/*", step_metric="generation/gen")

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        # W&B wants one monotonic step; trials and generations keep their own axes.
        key = "trial/id" if any(k.startswith("trial/") for k in scalars) else "generation/gen"
        self.active.log({**scalars, key: step})

    def end(self) -> None:
        self.active.finish()
