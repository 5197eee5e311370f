"""YAHPO Gym's learning-curve surrogates as fidelity tasks: ``fcnet``, ``nb301`` and ``taskset``.

Each scenario is a surrogate (an ONNX model, run by PyPI's ``yahpo-gym``) of real trainings
with an epoch fidelity; each of its instances (a data set, a task) is a task here, named
``<scenario>-<instance>``. A trial's training compute is counted in epochs (the task's
``Budget.tokens`` is its epochs: one "token" per epoch), it validates after every epoch, and
a checkpoint is the epoch reached, so a continued trial pays only the epochs it adds.
Values are to be minimised: a loss as it is, an accuracy (a fraction) as its error, ``1 - accuracy``.
Conditional spaces (``nb301``'s cell) are searched as flat ones; a config's inactive values
are dropped before the surrogate sees it.

The data is not in this repository: put YAHPO's data folders (from github's
slds-lmu/yahpo_data, one folder per scenario with ``config_space.json``, ``encoding.json``
and ``model.onnx``) in ``EVOBENCH_YAHPO_DATA`` (default ``~/.cache/evobench/yahpo``).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from evo.trial import Budget, FitnessBase, Objective, Trial, TrialResult
from evobench.tasks.fidelity import Task

DATA = Path(os.environ.get("EVOBENCH_YAHPO_DATA", Path.home() / ".cache" / "evobench" / "yahpo"))
GET_DATA = (
    "pip install --no-deps yahpo-gym==1.0.2 && pip install onnxruntime pandas, and put the scenario's folder "
    "from github's slds-lmu/yahpo_data (config_space.json, encoding.json, model.onnx) in "
    f"{DATA} (EVOBENCH_YAHPO_DATA)"
)
CHECKPOINT_FILE = "yahpo_checkpoint.json"


@dataclass(frozen=True)
class Scenario:
    objective: str  # the surrogate's output a run minimises
    accuracy: bool  # a fraction to maximise: the value is 1 - it
    instances: tuple[str, ...]  # its instances (taskset's: read from its data)
    instance_param: str | None = None  # the hyperparameter that names the instance in its data
    trials: int = 40  # a run's budget, in whole-budget trials


SCENARIOS = {
    "fcnet": Scenario(
        "valid_loss",
        False,
        (
            "fcnet_naval_propulsion",
            "fcnet_protein_structure",
            "fcnet_slice_localization",
            "fcnet_parkinsons_telemonitoring",
        ),
        "task",
    ),
    "nb301": Scenario("val_accuracy", True, ("CIFAR10",)),
    "taskset": Scenario("valid1", False, (), "task_name"),
}
# A scenario's name stands for all of its instances (``expand``).
TASK_NAMES = (*SCENARIOS, *(f"{s}-{i}" for s, spec in SCENARIOS.items() for i in spec.instances))


def split(name: str) -> tuple[str, str]:
    scenario, instance = name.split("-", 1)
    return scenario, instance


def instances(scenario: str) -> tuple[str, ...]:
    """The scenario's instances: those its data names, where it has them (``instance_param``)."""
    spec = SCENARIOS[scenario]
    path = DATA / scenario / "config_space.json"
    if spec.instance_param and path.exists():
        for h in json.loads(path.read_text()).get("hyperparameters", []):
            if h.get("name") == spec.instance_param:
                return tuple(h.get("choices") or h.get("sequence") or (h.get("value"),))
    return spec.instances


def expand(names: list[str]) -> list[str]:
    """Task names with each scenario's name replaced by its instances' (one that has none known
    stays, to be refused by ``missing``)."""
    out: list[str] = []
    for name in names:
        found = instances(name) if name in SCENARIOS else ()
        out += [f"{name}-{i}" for i in found] if found else [name]
    return out


def missing(name: str) -> str | None:
    """Why task ``name`` cannot run here (the runtime or the scenario's data is missing), or None."""
    import importlib.util

    scenario = name if name in SCENARIOS else split(name)[0]
    if importlib.util.find_spec("yahpo_gym") is None or importlib.util.find_spec("onnxruntime") is None:
        return f"{name}: YAHPO Gym is not installed ({GET_DATA})"
    absent = [f for f in ("config_space.json", "encoding.json", "model.onnx") if not (DATA / scenario / f).exists()]
    if absent:
        return f"{name}: YAHPO's {scenario} data is missing ({', '.join(absent)} not in {DATA / scenario}): {GET_DATA}"
    if name in SCENARIOS:
        return f"{name}: its data names no instances"
    return None


@cache
def _benchmark(scenario: str, instance: str) -> Any:
    """yahpo-gym's BenchmarkSet on our data folder (its settings file is ours too, not ~/.config's)."""
    settings = DATA / "local_config.yaml"
    if not settings.exists():
        settings.write_text(json.dumps({"data_path": str(DATA)}))  # YAML reads JSON
    os.environ["YAHPO_LOCAL_CONFIG"] = str(settings)
    from ConfigSpace import ConfigurationSpace
    from yahpo_gym import BenchmarkSet

    if not hasattr(ConfigurationSpace, "_sort_hyperparameters"):
        # yahpo-gym 1.0.2 pins ConfigSpace <= 0.6.1 (SMAC needs 1.x) for this one call, which orders
        # the names it then reads by name: with 1.x's spaces, always ordered, it has nothing to do
        ConfigurationSpace._sort_hyperparameters = lambda self: None
    return BenchmarkSet(scenario, instance=instance)


def search_space(bench: Any, fidelity: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The scenario's ConfigSpace as our search space spec, and its constants (the instance, ...)."""
    from ConfigSpace import hyperparameters as hp

    space: dict[str, Any] = {}
    fixed: dict[str, Any] = {}
    for h in list(bench.get_opt_space().values()):
        if h.name == fidelity:
            continue
        if isinstance(h, hp.Constant):
            fixed[h.name] = h.value
        elif isinstance(h, hp.CategoricalHyperparameter):
            space[h.name] = {"type": "categorical", "choices": list(h.choices)}
        elif isinstance(h, hp.OrdinalHyperparameter):
            space[h.name] = {"type": "categorical", "choices": list(h.sequence), "ordered": True}
        elif isinstance(h, hp.UniformIntegerHyperparameter):
            space[h.name] = {
                "type": "int",
                "low": int(h.lower),
                "high": int(h.upper),
                **({"log": True} if h.log else {}),
            }
        else:
            kind = "log_float" if h.log else "float"
            space[h.name] = {"type": kind, "low": float(h.lower), "high": float(h.upper)}
    return space, fixed


class YahpoFitness(FitnessBase):
    """Answers a trial from the scenario's surrogate: the curve of its config, epoch by epoch."""

    intermediate_values = True

    def __init__(self, scenario: str, instance: str) -> None:
        self.scenario, self.instance = scenario, instance
        self.spec = SCENARIOS[scenario]
        self.bench = _benchmark(scenario, instance)
        self.fidelity, *others = self.bench.config.fidelity_params
        fidelities = self.bench.get_fidelity_space()
        self.others = {p: fidelities.get(p).upper for p in others}  # taskset's replication: its last
        self.epochs = int(self.bench.get_fidelity_space().get(self.fidelity).upper)
        self.space = self.bench.get_opt_space()
        self.objectives = (Objective(f"{'val_error' if self.spec.accuracy else self.spec.objective}"),)
        self._curves: OrderedDict[str, np.ndarray] = OrderedDict()  # the last configs' curves

    def fingerprint(self) -> str:
        return f"yahpo-{self.scenario}-{self.instance}"

    def describe(self) -> dict[str, Any]:
        return {"yahpo": self.scenario, "instance": self.instance, "objective": self.objectives[0].name}

    def curve(self, config: dict[str, Any]) -> np.ndarray:
        """The surrogate's values after epochs 1 to ``epochs`` (to minimise), one call for all of them."""
        from ConfigSpace.util import deactivate_inactive_hyperparameters

        key = json.dumps(config, sort_keys=True, default=str)
        if key not in self._curves:
            names = set(self.space.keys())
            given = {**{k: v for k, v in config.items() if k in names}, **self.others, self.fidelity: 1}
            active = dict(deactivate_inactive_hyperparameters(given, self.space))
            rows = [{**active, **self.others, self.fidelity: e} for e in range(1, self.epochs + 1)]
            values = np.array([float(r[self.spec.objective]) for r in self.bench.objective_function(rows)])
            self._curves[key] = 1.0 - values if self.spec.accuracy else values
            if len(self._curves) > 4096:
                self._curves.popitem(last=False)
        return self._curves[key]

    def evaluate(self, trial: Trial) -> TrialResult:
        if not 0.0 < trial.fidelity <= 1.0:
            raise ValueError(f"fidelity={trial.fidelity!r}: must be in (0, 1]")
        config = dict(trial.config)
        curve = self.curve(config)
        start = json.loads((Path(trial.resume_from) / CHECKPOINT_FILE).read_text())["epoch"] if trial.resume_from else 0
        target = max(1, round(trial.fidelity * self.epochs))
        name = self.objectives[0].name
        reached = max(start, target)
        for epoch in range(start + 1, target):
            value = float(curve[epoch - 1])
            if trial.early_stop is not None and trial.early_stop.prunes(epoch / self.epochs, value):
                return TrialResult.pruned(
                    {name: value}, f"{name} {value:.4g} at epoch {epoch}", metrics=self._metrics(curve, start, epoch)
                )
        metrics = self._metrics(curve, start, reached)
        if trial.checkpoint_dir is not None:
            Path(trial.checkpoint_dir).mkdir(parents=True, exist_ok=True)
            (Path(trial.checkpoint_dir) / CHECKPOINT_FILE).write_text(json.dumps({"epoch": reached}))
        return TrialResult.complete({name: float(curve[reached - 1])}, metrics=metrics)

    def _metrics(self, curve: np.ndarray, start: int, epoch: int) -> dict[str, Any]:
        return {
            f"{self.objectives[0].name}_curve": [[e, float(curve[e - 1])] for e in range(1, epoch + 1)],
            "steps": epoch,
            "start_step": start,
            "budget_steps": self.epochs,
            "train_tokens": epoch - start,  # epochs: the compute a trial is charged
        }


def task_and_fitness(name: str) -> tuple[Task, Any]:
    """The task ``<scenario>-<instance>`` and a factory for its fitness; refused (SystemExit) when
    the runtime or the data is missing."""
    why = missing(name)
    if why:
        raise SystemExit(why)
    scenario, instance = split(name)
    fitness = YahpoFitness(scenario, instance)
    space, fixed = search_space(fitness.bench, fitness.fidelity)
    task = Task(
        fitness={"type": f"yahpo-{scenario}"},
        budget=Budget(tokens=fitness.epochs),
        space=space,
        fixed=fixed,
        population=8,
        trials=SCENARIOS[scenario].trials,
        points=fitness.epochs,
    )
    return task, lambda: fitness
