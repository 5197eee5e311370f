"""The ``evo`` command: each command mapped to what it does, and every way a command can end
mapped to its exit code. The composition root: the only place the engine meets ``fitness``."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence

from evo.cli._parser import build_parser, one_line_deprecations
from evo.cli._read_commands import cmd_best, cmd_compare, cmd_plot, cmd_report, cmd_status
from evo.cli._run_commands import cmd_plan, cmd_reference, cmd_resume, cmd_run
from evo.evaluation import RunAborted
from evo.optuna import export_run, serve
from evo.reporting.plots import NothingToPlot
from evo.storage import RunDirInUse, StoreError
from evo.trial import ConfigError

EXIT_CONFIG = 2  # bad config, data, model path or run directory
EXIT_FAILED = 1  # the run itself failed (e.g. aborted after consecutive failures)

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
