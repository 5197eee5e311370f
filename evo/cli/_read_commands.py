"""The commands that read a run and change nothing: status, best, plot, report, compare."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

import yaml

from evo.cli._run_commands import print_best
from evo.reporting import best_entries, importance, status_lines, stored_best_lines, write_report
from evo.reporting.plots import FIGURE_SUFFIXES
from evo.run import load_stored_config
from evo.storage import RunStore, TrialRecord, check_output, write_output
from evo.trial import ConfigError


def export_sections(spec: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``config`` in the sections the run's fitness exports, without building the fitness."""
    from fitness import export_sections

    return export_sections(spec, config)


def cmd_status(args: argparse.Namespace) -> int:
    found = importance(args.run_dir, required=True) if args.importance else None
    with RunStore.read(args.run_dir) as store:
        config = load_stored_config(store)
        print("\n".join(status_lines(store, config)))
        print_best(stored_best_lines(store, config))
    if found is not None:
        print("\n" + "\n".join(found.lines()))
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    """The best config; with several objectives the whole Pareto front; for a PBT run
    also the hyperparameter schedule the best adapter was trained with."""
    if args.top is not None and args.top < 1:
        raise ConfigError(f"--top {args.top}: give how many of the best trials to show, 1 or more")
    target = None if args.export is None else check_output(args.export, flag="--export")
    with RunStore.read(args.run_dir) as store:
        config = load_stored_config(store)
        chosen, entries, front = best_entries(store, config, args.top, export_sections)
        environment = store.meta("environment") or {}
    if args.format != "hf" and not front and len(chosen) > 1:
        raise ConfigError(f"--format {args.format}: writes one config, not --top {args.top}; use --format hf")
    if args.format != "hf":  # a trainer takes one config: the best (on a front, by the first objective)
        text = _trainer_file(args, config.fitness, chosen[0], entries[0], environment, len(entries) if front else 0)
    elif front:
        text = yaml.safe_dump({"pareto_front": entries}, sort_keys=False)
    else:
        text = yaml.safe_dump(entries[0] if len(entries) == 1 else entries, sort_keys=False)
    if target is not None:
        write_output(target, text)
        print(f"wrote {target}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def _trainer_file(
    args: argparse.Namespace, spec: Mapping[str, Any], best: TrialRecord, entry: Mapping[str, Any], env, front: int
) -> str:
    """The best trial as the file ``--format`` names (trl, llamafactory, axolotl); ``front``: the front's size or 0."""
    from fitness import export_for_trainer

    values = ", ".join(f"{k} {v:.6g}" for k, v in best.values.items())
    notes = [f"evo best {args.run_dir}: trial {best.id} ({values})"]
    if front:
        notes.append(f"one of {front} configs on the Pareto front: the best by the first objective")
    if "pbt_schedule" in entry:
        notes.append("a PBT run: the hyperparameters changed during training; these are the last (see --format hf)")
    applied, adapter = best.applied_config or best.config, entry.get("adapter_path")
    return export_for_trainer(spec, args.format, config=applied, adapter_path=adapter, environment=env, notes=notes)


def cmd_plot(args: argparse.Namespace) -> int:
    from evo.reporting.plots import plot_run

    report = plot_run(args.run_dir, args.out)
    for path in report.written.values():
        print(path)
    for name, reason in report.skipped.items():
        print(f"{name}: not drawn, {reason}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    print(write_report(args.run_dir, args.out, export_sections=export_sections))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from evo.reporting.plots._compare import compare_runs  # matplotlib loads only here

    out = check_output(args.out, flag="--out")
    if out.suffix.lower() not in FIGURE_SUFFIXES:
        raise ConfigError(f"--out {out}: the figure is written as {', '.join(FIGURE_SUFFIXES)}; name a file ending so")
    series = compare_runs(args.run_dirs, out)
    print(f"{args.out} ({len(series['runs'])} runs, compute in {series['compute_unit']})")
    return 0
