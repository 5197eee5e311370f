"""The ``evo`` command: run, resume, status, best."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from evo import _dashboard, _importance, _optuna_export, _plan
from evo._api import RunAborted, load_stored_config, resume_run, start_run, with_run_budget
from evo._cli_parser import build_parser, one_line_deprecations
from evo._observers import RunObserver
from evo._progress import TerminalProgress
from evo._results import build_result
from evo._spending import Spending, duration
from evo.config import AUTO_DEVICES, MAX_GENERATIONS, ExecutorSettings, RunConfig, apply_override, load_config
from evo.config._reference import reference
from evo.executors import ExecutorType, make_executor
from evo.plots import NothingToPlot
from evo.storage import BASELINE_GENERATION, RunDirInUse, RunStore, StoreError
from evo.trial import ConfigError

EXIT_CONFIG = 2  # bad config, data, model path or run directory
EXIT_FAILED = 1  # the run itself failed (e.g. aborted after consecutive failures)


def _make_fitness(spec):
    from fitness import make_fitness  # the composition root: the only place evo meets fitness

    return make_fitness(spec)


def _export_sections(spec: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``config`` in the sections the run's fitness exports, without building the fitness."""
    from fitness import export_sections

    return export_sections(spec, config)


def _trainer_files(args: argparse.Namespace, config: RunConfig, best, entry: Mapping[str, Any], env, front: int):
    """The best trial as the files ``--format`` names, the export first; None: the sections are the export."""
    from fitness import export_for_trainer

    notes = [f"evo best {args.run_dir}: trial {best.id} ({', '.join(f'{k} {v:.6g}' for k, v in best.values.items())})"]
    if front:
        notes.append(f"one of {front} configs on the Pareto front: the best by the first objective")
    if "pbt_schedule" in entry:
        notes.append("a PBT run: the hyperparameters changed during training; these are the last (see --format hf)")
    options = {k: getattr(args, k) for k in ("steps", "epochs", "target_version", "check")}
    return export_for_trainer(
        config.fitness, args.format, config=best.applied_config or best.config, adapter_path=entry.get("adapter_path"),
        environment=env, notes=notes, out=args.export, trained_steps=best.metrics.get("budget_steps"), **options,
    )  # fmt: skip


def _executor_overrides(args: argparse.Namespace) -> list[str]:
    """--executor and --ray-address as config overrides (--ray-address implies ray)."""
    out = [f"executor.type={args.executor}"] if args.executor else []
    if args.ray_address:
        out += [] if args.executor else ["executor.type=ray"]
        out.append(f"executor.address={json.dumps(args.ray_address)}")  # a string, whatever YAML thinks
    return out


@contextlib.contextmanager
def _fitness_and_executor(config: RunConfig):
    """The run's fitness and executor, both closed however the run ends.

    Ray actors get a factory, not the driver's fitness: each builds its own, once.
    """
    fitness = _make_fitness(config.fitness)
    executor = None
    try:
        executor = make_executor(
            config.executor, fitness, factory=functools.partial(_make_fitness, dict(config.fitness))
        )
        yield fitness, executor
    finally:
        if executor is not None:
            executor.close()
        fitness.close()


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config, [*args.overrides, *(args.set or []), *_executor_overrides(args)])
    if args.out is None:
        args.out = Path("runs") / f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    RunStore.check_new(Path(args.out))  # before the fitness is built: a second, not minutes
    observers = _observers(args, config)  # first: a tracker that is not installed is a config error
    with _fitness_and_executor(config) as (fitness, executor):
        result = start_run(
            config,
            fitness,
            args.out,
            warm_start_from=args.warm_start,
            warm_start_generation=args.warm_start_generation,
            warm_start_top_k=args.warm_start_top_k,
            observers=observers,
            warn=lambda message: print(f"warning: {message}", file=sys.stderr),
            executor=executor,
        )
    _print_best(result.best_trials[:1], fitness.objectives)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    run_budget = _run_budget_overrides(args.overrides)
    with RunStore.open(args.run_dir) as store:
        config = load_stored_config(store)
    if run_budget is not None:
        config = with_run_budget(config, run_budget)  # refused here, before anything starts
    if args.executor or args.ray_address:  # this time only; the stored config keeps its executor
        config = dataclasses.replace(config, executor=_moved(config.executor, args))
    observers = _observers(args, config)
    with _fitness_and_executor(config) as (fitness, executor):
        result = resume_run(args.run_dir, fitness, run_budget=run_budget, observers=observers, executor=executor)
    _print_best(result.best_trials[:1], fitness.objectives)
    return 0


def _run_budget_overrides(overrides: Sequence[str]) -> dict[str, Any] | None:
    """``run_budget.hours=6 ...`` as a mapping; a resumed run changes nothing else."""
    if not overrides:
        return None
    raw: dict[str, Any] = {}
    for assignment in overrides:
        apply_override(raw, assignment)
        if set(raw) != {"run_budget"} or not isinstance(raw["run_budget"], dict):
            key = assignment.partition("=")[0]
            raise ConfigError(f"{key}: evo resume changes only run_budget.* (the rest of a run stays as it started)")
    return raw["run_budget"]


def _moved(settings: ExecutorSettings, args: argparse.Namespace) -> ExecutorSettings:
    """The stored executor settings on the executor --executor / --ray-address name: what
    only the other one reads (a cluster address, GPUs per actor, a list of devices) is dropped."""
    kind = ExecutorType(args.executor or "ray")
    if kind is settings.type and not args.ray_address:
        return settings
    ray = kind is ExecutorType.RAY
    return dataclasses.replace(
        settings,
        type=kind,
        address=args.ray_address or (settings.address if ray else None),
        gpus_per_trial=settings.gpus_per_trial if ray or settings.gpus_per_trial == 1 else None,
        devices=AUTO_DEVICES if ray else settings.devices,
    )


def cmd_plot(args: argparse.Namespace) -> int:
    from evo.plots import plot_run

    report = plot_run(args.run_dir, args.out)
    for path in report.written.values():
        print(path)
    for name, reason in report.skipped.items():
        print(f"{name}: not drawn, {reason}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from evo._report import write_report

    print(write_report(args.run_dir, args.out, export_sections=_export_sections))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from evo.plots._compare import compare_runs

    series = compare_runs(args.run_dirs, args.out)
    print(f"{args.out} ({len(series['runs'])} runs, compute in {series['compute_unit']})")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from fitness import plan  # the composition root: the fitness answers in plain data

    return _plan.print_plan(load_config(args.config, args.overrides), plan)


def cmd_reference(args: argparse.Namespace) -> int:
    from fitness import config_reference

    text = reference(config_reference())
    if args.out is None:
        print(text, end="")
    else:
        Path(args.out).write_text(text)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    found = _importance.importance(args.run_dir, required=True) if args.importance else None
    with RunStore.open(args.run_dir) as store:
        config = load_stored_config(store)
        stats = store.generation_stats()
        trials = store.trials()
        objectives = _objectives_of(store, trials)
        header = ("gen", "evals", "cached", "failed", "pruned", "best", "median", "worst", "diversity")
        rows = [[_fmt(s.get(h)) for h in header] for s in stats]
        _table(header, rows)
        by_status: dict[str, int] = {}
        for t in trials:
            if t.generation >= BASELINE_GENERATION:
                label = t.status.value + (f"/{t.reason.value}" if t.reason else "")
                by_status[label] = by_status.get(label, 0) + 1
        planned = config.evolution.planned_generations + 1
        of = "" if config.run_budget is not None and planned > MAX_GENERATIONS else f"/{planned}"
        print(
            f"\ngenerations finished: {len(stats)}{of}; trials: "
            + ", ".join(f"{n} {k}" for k, n in sorted(by_status.items()))
        )
        if config.run_budget is not None:
            spending = Spending.open(store, config.run_budget, config.budget)
            eta = spending.eta_seconds(running=False)
            left = "spent" if not spending.allows() else f"ETA {duration(eta)}" if eta is not None else "ETA ?"
            print(f"run budget: {spending.summary(running=False)} ({left})")
        by_device: dict[str, int] = {}
        for t in trials:
            if "device_label" in t.metrics:
                by_device[str(t.metrics["device_label"])] = by_device.get(str(t.metrics["device_label"]), 0) + 1
        if by_device:  # trials that ran on a device of the local executor's or of a Ray actor's
            print("trials by device: " + ", ".join(f"{label} {n}" for label, n in sorted(by_device.items())))
        baseline = [t for t in trials if t.generation == BASELINE_GENERATION]
        if baseline and baseline[0].ok:
            name = next(iter(baseline[0].values))
            print(f"baseline {name}: {_fmt(baseline[0].values[name])}")
        result = build_result(store, objectives, config.evolution.hall_of_fame)
        _print_best(result.best_trials[:1], objectives)
    if found is not None:
        print("\n" + "\n".join(found.lines()))
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    """The best config; with several objectives the whole Pareto front; for a PBT run
    also the hyperparameter schedule the best adapter was trained with."""
    with RunStore.open(args.run_dir) as store:
        config = load_stored_config(store)
        objectives = _objectives_of(store, store.trials())
        result = build_result(store, objectives, max(config.evolution.hall_of_fame, args.top or 1))
        if not result.best_trials:
            raise ConfigError(f"{args.run_dir}: no trial has completed yet, so there is no best config")
        artifacts = store.meta("best_artifacts")
        schedule = store.meta("pbt_schedule") or []
        front = len(objectives) > 1 and args.top is None
        chosen = result.best_trials if front else result.best_trials[: args.top or 1]
        if args.format != "hf" and not front and len(chosen) > 1:
            raise ConfigError(f"--format {args.format}: writes one config, not --top {args.top}; use --format hf")
        environment = store.meta("environment") or {}
        if front:
            chosen = sorted(chosen, key=lambda t: objectives[0].weight * -t.values[objectives[0].name])
        entries = []
        for trial in chosen:
            applied = trial.applied_config or trial.config
            entry: dict[str, Any] = {
                "trial_id": trial.id,
                "objectives": dict(trial.values),
                **_export_sections(config.fitness, applied),
            }
            if artifacts and artifacts["trial_id"] == trial.id:
                entry["adapter_path"] = str(Path(artifacts["path"]) / "adapter")
            if schedule and schedule[-1]["trial"] == trial.id:
                entry["pbt_schedule"] = [
                    {
                        "from_fraction": s["from_fraction"],
                        "to_fraction": s["to_fraction"],
                        **_export_sections(config.fitness, s["config"]),
                    }
                    for s in schedule
                ]
            entries.append(entry)
    files = None  # a trainer takes one config: the best (on a front, by the first objective)
    if args.format != "hf" or (len(entries) == 1 and "pbt_schedule" not in entries[0]):
        files = _trainer_files(args, config, chosen[0], entries[0], environment, len(entries) if front else 0)
    found = {"pareto_front": entries} if front else entries[0] if len(entries) == 1 else entries
    if files is None and not args.export:
        print(yaml.safe_dump(found, sort_keys=False), end="")
        return 0
    from fitness import write_export

    files = files or {Path(args.export): yaml.safe_dump(found, sort_keys=False)}
    passed, lines = write_export(files, args.run_dir, args.format, check=args.check)
    print("\n".join(lines), file=sys.stderr)
    return 0 if passed else EXIT_CONFIG


# -- helpers ---------------------------------------------------------------------------
def _observers(args: argparse.Namespace, config) -> list[RunObserver]:
    from evo._trackers import make_trackers
    from evo.plots import PlotRefresher

    observers: list[RunObserver] = [] if args.quiet else [TerminalProgress()]
    if not args.no_plots:
        observers.append(PlotRefresher())
    return observers + make_trackers(config.report_to)


def _objectives_of(store: RunStore, trials) -> tuple:
    """The run's objectives, from the stored objective names (no fitness is built)."""
    from evo.trial import Direction, Objective

    stored = store.meta("objectives")
    if stored:
        return tuple(Objective(o["name"], Direction(o["direction"])) for o in stored)
    names = next((list(t.values) for t in trials if t.ok), ["objective"])
    return tuple(Objective(n) for n in names)


def _print_best(best_trials, objectives) -> None:
    if not best_trials:
        print("no completed trial: no best config", file=sys.stderr)
        return
    best = best_trials[0]
    values = ", ".join(f"{o.name}={best.values[o.name]:.5g}" for o in objectives if o.name in best.values)
    print(f"best (trial {best.id}): {values}")
    print(yaml.safe_dump(dict(best.applied_config or best.config), sort_keys=True), end="")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "resume": cmd_resume,
    "status": cmd_status,
    "plot": cmd_plot,
    "report": cmd_report,
    "compare": cmd_compare,
    "best": cmd_best,
    "reference": cmd_reference,
    "plan": cmd_plan,
    "dashboard": lambda args: _dashboard.serve(args.run_dirs, host=args.host, port=args.port),
    "export-optuna": lambda args: _optuna_export.export_run(args.run_dir, args.storage_url, name=args.study_name),
}


def main(argv: Sequence[str] | None = None) -> int:
    with warnings.catch_warnings():
        warnings.showwarning = one_line_deprecations(warnings.showwarning)
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    takes = args.command in ("run", "resume", "plan")
    if len(overrides) != len(extra) or (overrides and not takes):
        parser.error(f"unrecognized arguments: {' '.join(a for a in extra if a not in overrides or not takes)}")
    args.overrides = overrides
    return _run_command(args)


def _run_command(args: argparse.Namespace) -> int:
    try:
        return COMMANDS[args.command](args)
    except NothingToPlot as exc:
        print(f"evo: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (ConfigError, StoreError, RunDirInUse) as exc:
        print(f"evo: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except RunAborted as exc:
        print(f"evo: run stopped: {exc}; fix the cause, then 'evo resume'", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # `evo status RUN | head`: the reader left, which is fine
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("evo: interrupted; continue with 'evo resume RUN_DIR'", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
