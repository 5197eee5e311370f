"""The ``evo`` command line: its commands, their arguments, and the flags a release renamed.

Only argparse here; ``evo.cli`` maps each command to what it does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evo.config import ExecutorType
from evo.optuna import HOST, PORT
from evo.trial import Deprecated, renamed


def _executor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--executor",
        choices=[t.value for t in ExecutorType],
        help="where trials run (default: the config's executor.type, else local)",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="run trials on this Ray cluster ('auto', 'ray://head:10001'); implies --executor ray",
    )


def _driver_arguments(parser: argparse.ArgumentParser) -> None:
    """What evo run and evo resume share: output and where trials run."""
    parser.add_argument("--quiet", action="store_true", help="no live progress")
    parser.add_argument("--no-plots", action="store_true", help="do not refresh RUN_DIR/plots during the run")
    _executor_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evo", description="Evolve QLoRA fine-tuning hyperparameters.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="start an evolutionary run from a YAML config",
        usage="evo run CONFIG [KEY=VALUE ...] [options]",
        description="Start an evolutionary run. KEY=VALUE arguments override config values, "
        "e.g. evolution.generations=3 budget.steps=20 (values are parsed as YAML).",
    )
    run.add_argument("config", help="run config (YAML), e.g. experiments/synthetic.yaml")
    run.add_argument("--out", help="run directory: new or empty (default: runs/<config>-<time>)")
    run.add_argument("--warm-start", type=Path, metavar="RUN_DIR", help="start from the population of an earlier run")
    run.add_argument(
        "--warm-start-generation", type=int, metavar="G", help="with --warm-start: that generation (default: last)"
    )
    run.add_argument("--warm-start-top-k", type=int, metavar="K", help="with --warm-start: only its K best")
    for old, new, kind in (
        ("--seed-from", "--warm-start", Path),
        ("--seed-generation", "--warm-start-generation", int),
        ("--seed-top-k", "--warm-start-top-k", int),
    ):  # 0.1's flags: "seed" is the random seed only since 0.2
        dest = new.removeprefix("--").replace("-", "_")
        run.add_argument(old, type=kind, dest=dest, action=_Renamed, new=new, help=argparse.SUPPRESS)
    run.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="the same as a positional KEY=VALUE (repeatable)"
    )
    _driver_arguments(run)

    resume = sub.add_parser(
        "resume",
        help="continue a stopped or killed run",
        usage="evo resume RUN_DIR [run_budget.KEY=VALUE ...] [options]",
        description="Continue a run where it stopped. run_budget.KEY=VALUE arguments give it new limits, "
        "e.g. run_budget.hours=6 (the rest of the run stays as it started).",
    )
    resume.add_argument("run_dir", type=Path)
    _driver_arguments(resume)

    status = sub.add_parser("status", help="a table per generation and the best so far")
    status.add_argument("run_dir", type=Path)
    status.add_argument(
        "--importance", action="store_true", help="also which genes mattered (fANOVA; the dashboard extra)"
    )

    plot = sub.add_parser("plot", help="write PNG plots of a run into RUN_DIR/plots")
    plot.add_argument("run_dir", type=Path)
    plot.add_argument("--out", help="another directory for the PNGs")

    report = sub.add_parser("report", help="write one self-contained HTML report of a run")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--out", help="the HTML file (default RUN_DIR/report.html)")

    compare = sub.add_parser("compare", help="overlay the best-so-far curves of several runs")
    compare.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    compare.add_argument("--out", default="compare.png", help="the figure: .png, .pdf or .svg (default compare.png)")

    best = sub.add_parser("best", help="print the best config (or export it as YAML)")
    best.add_argument("run_dir", type=Path)
    best.add_argument("--export", metavar="FILE", help="write the YAML to FILE instead of printing it")
    best.add_argument("--format", default="hf", help="hf (default), trl, llamafactory or axolotl: whose file to write")
    length = best.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="the training length written (default: what each trial trained)")
    length.add_argument("--epochs", type=float, help="train this many epochs instead of a number of steps")
    best.add_argument(
        "--target-version", metavar="X.Y", help="the transformers the trainer runs on (default: read from its Python)"
    )
    best.add_argument(
        "--check",
        nargs="?",
        const="",
        metavar="PYTHON",
        help="load the export with the trainer's own parser and train two steps (in PYTHON, default: the trainer's)",
    )
    best.add_argument(
        "--top",
        type=int,
        default=None,
        help="the K best trials (default: the best one; with several objectives the Pareto front)",
    )

    dash = sub.add_parser("dashboard", help="optuna-dashboard on runs' journals, live while they run")
    dash.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    dash.add_argument("--host", default=HOST, help=f"the address to listen on (default {HOST}: this machine)")
    dash.add_argument("--port", type=int, default=PORT, help=f"the port (default {PORT}; 0: any free one)")

    export = sub.add_parser("export-optuna", help="copy a finished run into an Optuna storage as one study")
    export.add_argument("run_dir", type=Path)
    export.add_argument("storage_url", metavar="STORAGE_URL", help="e.g. sqlite:///studies.db or a PostgreSQL URL")
    export.add_argument("--study-name", help="the study's name (default: the run directory's name)")
    export.add_argument("--overwrite", action="store_true", help="replace a study of that name (e.g. a partial export)")

    plan = sub.add_parser(
        "plan",
        help="what a run would cost before it starts: trials, tokens, memory per shape and GPU",
        usage="evo plan CONFIG [KEY=VALUE ...]",
        description="What a run would cost before it spends anything: its trials and training tokens, each "
        "shape's estimated peak memory and micro-batch on its device and on GPUs of 24 to 141 GB, the cohort "
        "size, and the wall time where speeds were measured. Reads no weights and no data. KEY=VALUE "
        "arguments override config values, as with evo run.",
    )
    plan.add_argument("config", help="run config (YAML), e.g. experiments/gpu_7b.yaml")

    docs = sub.add_parser("reference", help="every config key: its default, what it accepts, what it does (markdown)")
    docs.add_argument("--out", help="write it to this file (docs/config.md) instead of printing it")
    return parser


class _Renamed(argparse.Action):
    """A flag a release renamed: it sets the new one's value, and says so on one line."""

    def __init__(self, option_strings: list[str], dest: str, *, new: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        renamed(str(option_string), self.new, stacklevel=2)
        setattr(namespace, self.dest, values)


def one_line_deprecations(show: Callable[..., None]) -> Callable[..., None]:
    """A renamed key or flag is one ``evo: warning:`` line; other warnings show as Python shows them."""

    def showwarning(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, Deprecated):
            print(f"evo: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning
