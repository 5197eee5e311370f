"""What ``evo status`` and ``evo best`` print, assembled from the store alone (no fitness built)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from evo.config import MAX_GENERATIONS, RunConfig
from evo.evaluation import Spending, build_result, duration, stored_objectives
from evo.storage import BASELINE_GENERATION, RunStore, TrialRecord
from evo.trial import ConfigError, Objective

ExportSections = Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, dict[str, Any]]]
COLUMNS = ("gen", "evals", "cached", "failed", "pruned", "best", "median", "worst", "diversity")


def status_lines(store: RunStore, config: RunConfig) -> list[str]:
    """A table per generation, the trials by status, the run budget, devices and the baseline."""
    trials = store.trials()
    stats = store.generation_stats()
    lines = table(COLUMNS, [[fmt(s.get(h)) for h in COLUMNS] for s in stats])
    by_status: dict[str, int] = {}
    for t in trials:
        if t.generation >= BASELINE_GENERATION:
            label = t.status.value + (f"/{t.reason.value}" if t.reason else "")
            by_status[label] = by_status.get(label, 0) + 1
    planned = config.evolution.planned_generations + 1
    of = "" if config.run_budget is not None and planned > MAX_GENERATIONS else f"/{planned}"
    lines += [
        "",
        f"generations finished: {len(stats)}{of}; trials: "
        + ", ".join(f"{n} {k}" for k, n in sorted(by_status.items())),
    ]
    if config.run_budget is not None:
        spending = Spending.open(store, config.run_budget, config.budget)
        eta = spending.eta_seconds(running=False)
        left = "spent" if not spending.allows() else f"ETA {duration(eta)}" if eta is not None else "ETA ?"
        lines.append(f"run budget: {spending.summary(running=False)} ({left})")
    by_device: dict[str, int] = {}
    for t in trials:
        if "device_label" in t.metrics:
            by_device[str(t.metrics["device_label"])] = by_device.get(str(t.metrics["device_label"]), 0) + 1
    if by_device:  # trials that ran on a device of the local executor's or of a Ray actor's
        lines.append("trials by device: " + ", ".join(f"{label} {n}" for label, n in sorted(by_device.items())))
    baseline = [t for t in trials if t.generation == BASELINE_GENERATION]
    if baseline and baseline[0].ok:
        name = next(iter(baseline[0].values))
        lines.append(f"baseline {name}: {fmt(baseline[0].values[name])}")
    return lines


def stored_best_lines(store: RunStore, config: RunConfig) -> list[str]:
    """:func:`best_lines` of a stored run."""
    objectives = stored_objectives(store)
    return best_lines(build_result(store, objectives, config.evolution.hall_of_fame).best_trials[:1], objectives)


def best_lines(best_trials: Sequence[TrialRecord], objectives: Sequence[Objective]) -> list[str]:
    """The best trial's values and config, as ``evo run`` ends and ``evo status`` shows it (none: no lines)."""
    if not best_trials:
        return []
    best = best_trials[0]
    values = ", ".join(f"{o.name}={best.values[o.name]:.5g}" for o in objectives if o.name in best.values)
    config = yaml.safe_dump(dict(best.applied_config or best.config), sort_keys=True)
    return [f"best (trial {best.id}): {values}", *config.rstrip("\n").split("\n")]


def best_entries(
    store: RunStore, config: RunConfig, top: int | None, export_sections: ExportSections
) -> tuple[list[TrialRecord], list[dict[str, Any]], bool]:
    """``evo best``: the chosen trials, each as an entry in the sections the fitness exports (with
    its adapter and PBT schedule where the run kept them), and whether they are a Pareto front
    (several objectives and no ``top``). Refused when no trial has completed."""
    objectives = stored_objectives(store)
    result = build_result(store, objectives, max(config.evolution.hall_of_fame, top or 1))
    if not result.best_trials:
        raise ConfigError(f"{store.run_dir}: no trial has completed yet, so there is no best config")
    artifacts = store.meta("best_artifacts")
    schedule = store.meta("pbt_schedule") or []
    front = len(objectives) > 1 and top is None
    chosen = result.best_trials if front else result.best_trials[: top or 1]
    if front:
        chosen = sorted(chosen, key=lambda t: objectives[0].weight * -t.values[objectives[0].name])
    entries = []
    for trial in chosen:
        entry: dict[str, Any] = {
            "trial_id": trial.id,
            "objectives": dict(trial.values),
            **export_sections(config.fitness, trial.applied_config or trial.config),
        }
        if artifacts and artifacts["trial_id"] == trial.id:
            entry["adapter_path"] = str(Path(artifacts["path"]) / "adapter")
        if schedule and schedule[-1]["trial"] == trial.id:
            entry["pbt_schedule"] = [
                {
                    "from_fraction": s["from_fraction"],
                    "to_fraction": s["to_fraction"],
                    **export_sections(config.fitness, s["config"]),
                }
                for s in schedule
            ]
        entries.append(entry)
    return chosen, entries, front


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    return ["  ".join(h.rjust(w) for h, w in zip(header, widths))] + [
        "  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows
    ]
