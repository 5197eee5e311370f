"""The ``evo`` command: each command mapped to what it does, and every way a command can end
mapped to its exit code. The composition root: the only place the engine meets ``fitness``."""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from evo.cli._endings import (
    EXIT_ERROR,
    EXIT_REFUSED,
    EXIT_RUN_STOPPED,
    interrupted_exit_code,
    output_outlives_its_reader,
    signal_name,
    stopping_signals_interrupt,
)
from evo.cli._parser import build_parser, one_line_deprecations
from evo.cli._read_commands import cmd_best, cmd_compare, cmd_plot, cmd_report, cmd_status
from evo.cli._run_commands import cmd_plan, cmd_reference, cmd_resume, cmd_run
from evo.evaluation import RunAborted
from evo.optuna import export_run, serve
from evo.reporting.plots import NothingToPlot
from evo.storage import RunDirInUse, StoreError
from evo.trial import ConfigError

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
    "dashboard": lambda args: serve(args.run_dirs, host=args.host, port=args.port),
    "export-optuna": lambda args: export_run(
        args.run_dir, args.storage_url, name=args.study_name, overwrite=args.overwrite
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code (see ``evo/cli/_endings.py`` and the README's table)."""
    with warnings.catch_warnings(), output_outlives_its_reader(), stopping_signals_interrupt():
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
        return EXIT_ERROR
    except (ConfigError, StoreError, RunDirInUse) as exc:
        print(f"evo: error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except RunAborted as exc:
        print(f"evo: run stopped: {exc}; fix the cause, then {_resume_command(args)}", file=sys.stderr)
        return EXIT_RUN_STOPPED
    except KeyboardInterrupt as interrupt:  # Ctrl-C, and SIGTERM or SIGHUP (evo.cli._endings.Stopped)
        print(f"evo: interrupted by {signal_name(interrupt)}{_after_interrupt(args)}", file=sys.stderr)
        return interrupted_exit_code(interrupt)


def _run_dir(args: argparse.Namespace) -> Path | None:
    """The directory of the run this command drives (evo run, evo resume), once it is known."""
    if args.command == "run":
        return Path(args.out) if args.out is not None else None
    return Path(args.run_dir) if args.command == "resume" else None


def _resume_command(args: argparse.Namespace) -> str:
    run_dir = _run_dir(args)
    return f"'evo resume {shlex.quote(str(run_dir))}'" if run_dir is not None else "'evo resume RUN_DIR'"


def _after_interrupt(args: argparse.Namespace) -> str:
    """What an interrupted command leaves: a run to resume, one that never started, or nothing to say."""
    run_dir = _run_dir(args)
    if run_dir is None:
        return ""
    if not (run_dir / "run.db").is_file():
        return f" before the run started: {run_dir} holds no run"
    return f"; trials in flight are recorded as interrupted; continue with {_resume_command(args)}"
