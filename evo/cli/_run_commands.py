"""``evo run``, ``evo resume``, ``evo plan`` and ``evo reference``: the commands that build a
fitness, where the engine meets the ``fitness`` package."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evo.cli._endings import EXIT_NO_COMPLETE_TRIAL, EXIT_OK
from evo.config import (
    AUTO_DEVICES,
    ExecutorSettings,
    ExecutorType,
    RunConfig,
    apply_override,
    load_config,
    reference,
)
from evo.evaluation import RunObserver, RunResult
from evo.reporting import TerminalProgress, best_lines, make_trackers
from evo.reporting.plots import PlotRefresher
from evo.run import (
    check_before_run,
    check_config_file,
    fitness_and_executor,
    load_stored_config,
    print_plan,
    resume_run,
    start_run,
    with_run_budget,
)
from evo.storage import RunStore, check_new_run, check_output, claim_run_dir, write_output
from evo.trial import ConfigError, Fitness


def make_fitness(spec: Mapping[str, Any]) -> Fitness:
    from fitness import make_fitness  # the composition root: the only place evo meets fitness

    return make_fitness(spec)


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config, [*args.overrides, *(args.set or []), *_executor_overrides(args)])
    generated = args.out is None  # runs/<config>-<time>, made unique when the fitness is built
    out = Path("runs") / f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}" if generated else args.out
    # before the fitness is built: a second, not minutes (a generated name is claimed free later)
    out = check_output(out, flag="--out", directory=True) if generated else check_new_run(out)
    observers = _observers(args, config)  # first: a tracker that is not installed is a config error
    with fitness_and_executor(config, make_fitness) as (fitness, executor):
        run_dir = claim_run_dir(out) if generated else out
        args.out = run_dir  # what an interruption's line names
        if generated and args.quiet:  # the progress lines would name it; without them, this is the only place
            print(f"run directory: {run_dir}", file=sys.stderr)
        try:
            result = start_run(
                config,
                fitness,
                run_dir,
                warm_start_from=args.warm_start,
                warm_start_generation=args.warm_start_generation,
                warm_start_top_k=args.warm_start_top_k,
                observers=observers,
                warn=lambda message: print(f"warning: {message}", file=sys.stderr),
                executor=executor,
            )
        except BaseException:
            if generated and not any(run_dir.iterdir()):  # refused before the run was written
                run_dir.rmdir()
            raise
    return ended(result, fitness)


def cmd_resume(args: argparse.Namespace) -> int:
    run_budget = _run_budget_overrides(args.overrides)
    with RunStore.read(args.run_dir) as store:  # damage and an edited config.yaml before the fitness is built
        store.verify()
        config = load_stored_config(store)
        check_config_file(store)
    if run_budget is not None:
        config = with_run_budget(config, run_budget)  # refused here, before anything starts
    if args.executor or args.ray_address:  # this time only; the stored config keeps its executor
        config = dataclasses.replace(config, executor=_moved(config.executor, args))
    observers = _observers(args, config)
    with fitness_and_executor(config, make_fitness) as (fitness, executor):
        result = resume_run(args.run_dir, fitness, run_budget=run_budget, observers=observers, executor=executor)
    return ended(result, fitness)


def cmd_plan(args: argparse.Namespace) -> int:
    """What a run would cost, after the checks ``evo run`` makes: a config plan accepts, run accepts."""
    from fitness import plan, plan_fitness  # the composition root: the fitness answers in plain data

    config = load_config(args.config, args.overrides)
    make_trackers(config.report_to)
    fitness = plan_fitness(config.fitness)  # the model and the data as evo run finds them; no GPU needed
    try:
        for message in check_before_run(config, fitness):
            print(f"warning: {message}", file=sys.stderr)
    finally:
        fitness.close()
    return print_plan(config, plan)


def cmd_reference(args: argparse.Namespace) -> int:
    from fitness import config_reference

    target = None if args.out is None else check_output(args.out, flag="--out")
    text = reference(config_reference())
    if target is None:
        print(text, end="")
    else:
        write_output(target, text)
    return 0


def ended(result: RunResult, fitness: Fitness) -> int:
    """A run's best config on stdout, and its exit code: 0 with a best config, 4 without one."""
    print_best(best_lines(result.best_trials[:1], fitness.objectives))
    return EXIT_OK if result.best_trials else EXIT_NO_COMPLETE_TRIAL


def print_best(lines: Sequence[str]) -> None:
    """The best config's lines on stdout, or on stderr that there is none."""
    if lines:
        print("\n".join(lines))
    else:
        print("no completed trial: no best config", file=sys.stderr)


def _executor_overrides(args: argparse.Namespace) -> list[str]:
    """--executor and --ray-address as config overrides (--ray-address implies ray)."""
    out = [f"executor.type={args.executor}"] if args.executor else []
    if args.ray_address:
        out += [] if args.executor else ["executor.type=ray"]
        out.append(f"executor.address={json.dumps(args.ray_address)}")  # a string, whatever YAML thinks
    return out


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


def _observers(args: argparse.Namespace, config: RunConfig) -> list[RunObserver]:
    observers: list[RunObserver] = [] if args.quiet else [TerminalProgress()]
    if not args.no_plots:
        observers.append(PlotRefresher())
    return observers + make_trackers(config.report_to)
