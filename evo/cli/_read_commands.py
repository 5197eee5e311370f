"""The commands that read a run and change nothing: status, best, plot, report, compare."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from evo.cli._endings import EXIT_OK, EXIT_REFUSED
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
    also the hyperparameter schedule the best adapter was trained with. With ``--format``, the
    files that trainer runs as written (the export, its data, its chat template), and with
    ``--check`` the trainer's own parser and two training steps on them."""
    if args.top is not None and args.top < 1:
        raise ConfigError(f"--top {args.top}: give how many of the best trials to show, 1 or more")
    if args.export is not None:
        check_output(args.export, flag="--export")  # before the run is read: a second, not a traceback
    with RunStore.read(args.run_dir) as store:
        config = load_stored_config(store)
        chosen, entries, front = best_entries(store, config, args.top, export_sections)
        environment = store.meta("environment") or {}
    if args.format != "hf" and not front and len(chosen) > 1:
        raise ConfigError(f"--format {args.format}: writes one config, not --top {args.top}; use --format hf")
    files = None  # a trainer takes one config: the best (on a front, by the first objective)
    if args.format != "hf" or (len(entries) == 1 and "pbt_schedule" not in entries[0]):
        files = _trainer_files(args, config.fitness, chosen[0], entries[0], environment, len(entries) if front else 0)
    found = {"pareto_front": entries} if front else entries[0] if len(entries) == 1 else entries
    if files is None and args.export is None:
        print(yaml.safe_dump(found, sort_keys=False), end="")
        return EXIT_OK
    files = files or {Path(args.export): yaml.safe_dump(found, sort_keys=False)}
    targets = {check_output(path, flag="--export"): text for path, text in files.items()}  # all, before any is written
    for target, text in targets.items():
        write_output(target, text)
        print(f"wrote {target}", file=sys.stderr)
    return EXIT_OK if args.check is None else _check(args, next(iter(targets)))


def _check(args: argparse.Namespace, export: Path) -> int:
    """``--check``: the export loaded by the trainer's own parser and trained two steps, in the
    trainer's Python; its output kept beside the export; one line, and exit 2 when it fails."""
    from fitness import check_export

    result = check_export(args.format, export, args.check or None)
    if result.output:  # what the trainer printed, for the user to read
        log = check_output(export.with_name(export.name + ".check.log"), flag="--export")
        write_output(log, result.output)
        print(f"wrote {log} (the trainer's output)", file=sys.stderr)
    print(result.line, file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_REFUSED


def _trainer_files(
    args: argparse.Namespace, spec: Mapping[str, Any], best: TrialRecord, entry: Mapping[str, Any], env, front: int
) -> dict[Path, str] | None:
    """The best trial as the files ``--format`` names, the export first; None: the sections are the export."""
    from fitness import export_for_trainer

    notes = [f"evo best {args.run_dir}: trial {best.id} ({', '.join(f'{k} {v:.6g}' for k, v in best.values.items())})"]
    if front:
        notes.append(f"one of {front} configs on the Pareto front: the best by the first objective")
    if "pbt_schedule" in entry:
        notes.append("a PBT run: the hyperparameters changed during training; these are the last (see --format hf)")
    return export_for_trainer(
        spec,
        args.format,
        config=best.applied_config or best.config,
        adapter_path=entry.get("adapter_path"),
        environment=env,
        notes=notes,
        out=args.export,
        trained_steps=best.metrics.get("budget_steps"),
        **{k: getattr(args, k) for k in ("steps", "epochs", "target_version", "check")},
    )


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
