"""Compute efficiency at equal training tokens: plain GA, multi-fidelity GA, early stopping, PBT,
random search and Optuna (TPE, NSGA-II, TPE + Hyperband pruner).

Every method gets the same total training tokens (``--budget`` whole-budget trials'
worth); a run stops at the first trial that would start past it. Only trials trained
on the whole budget count towards "best so far" (a rung's or a pruned trial's value
does not compare), so a method pays for every token it spends on a candidate,
promoted or not (``evobench.ledger``).

Methods (``evobench.methods.fidelity``; ours through ``evo.start_run``, peers through
Optuna's own API, all driving the same fitness object): ``ga`` (the default GA), ``ga-plain``
(no surrogate screening), ``ga-gen`` (generational), ``ga-mf`` (multi-fidelity on the task's
rungs: eta 3, rungs 1/9, 1/3, 1 and 9 offspring; eta 2, rungs 1/4, 1/2, 1 and 8 offspring on
smollm2-surrogate), ``ga-es`` (early stopping, median rule after 25% of the budget), ``pbt``
(a population of ``--budget`` members, 4 intervals), ``random``, ``optuna-tpe``,
``optuna-nsga2`` and ``optuna-tpe-hb`` (TPE + ``HyperbandPruner(min_resource=1,
max_resource=1/first rung, reduction_factor=eta)``; a trial trains in chunks to the rungs,
continuing its checkpoint). ``--set KEY=VALUE ...`` puts evolution settings under all of ours
(each method's own win); the table names them, ``ga[replacement=nearest]``, so ``--merge``
can set variants side by side.

Tasks (``evobench.tasks.fidelity``): ``synthetic`` (fitness/synthetic.py's learning-curve
model; many seeds), ``smollm2`` (QLoRA on SmolLM2-135M-Instruct, 4-bit, CPU; ~20 s a trial,
a few seeds), ``smollm2-surrogate`` (the model of real SmolLM2 QLoRA trials in
``--data-file``, collected by collect_qlora_trials.py; about a millisecond a trial) and
``smollm2-direct`` (the real trials it models, to confirm its ranking; ``--cache FILE``
keeps every result, so a stopped run resumes at the trial it was on).

Prints the median [interquartile range] of the best validation perplexity at 25/50/75/100%
of the budget, the budget fraction each method needs to reach the median final result of
the plain GA and of Optuna TPE, and the wall time per run; writes an anytime plot.

    pip install -e '.[bench]'
    python experiments/benchmark_fidelity.py --task synthetic --plot experiments/results/fidelity_synthetic.png
    python experiments/benchmark_fidelity.py --task smollm2 --seeds 3 --plot experiments/results/fidelity_smollm2.png
    python experiments/benchmark_fidelity.py --task smollm2-surrogate --seeds 20 --budget 60 \
        --plot experiments/results/surrogate_smollm2.png [--surrogate-noise]
    OMP_NUM_THREADS=1 python experiments/benchmark_fidelity.py --task smollm2-direct --budget 20 \
        --methods ga optuna-tpe random --seeds 5 --cache direct.jsonl --save direct.json
    python experiments/benchmark_fidelity.py --quick   # synthetic, 3 seeds, ~5 s
    python experiments/benchmark_fidelity.py --merge a.json b.json   # one report over runs saved with --save
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from evo.trial import ConfigError
from evobench.ledger import Ledger, best_at, load_saved, save
from evobench.methods.fidelity import METHODS, OURS, RUNNERS, evo_config, fitness_spec, installed
from evobench.plots import plot_fidelity
from evobench.reports.fidelity import num, report
from evobench.tasks.fidelity import DIRECT, SURROGATE, TASKS, task
from evobench.tasks.qlora_data import DATA_FILE, require_data_file
from evobench.tasks.surrogate_fitness import SurrogateFitness
from evobench.trial_cache import CachedFitness, open_cache
from fitness import make_fitness


def setting(text: str) -> tuple[str, Any]:
    """``--set KEY=VALUE``: the value read as YAML (numbers, true/false, lists)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, yaml.safe_load(value)


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=[*TASKS, SURROGATE, DIRECT], default="synthetic")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=[m for m in METHODS if installed(m)])
    p.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        type=setting,
        help="evolution settings under every method of ours (a method's own win), named in the table: ga[KEY=VALUE]",
    )
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--first-seed", type=int, default=100)
    p.add_argument(
        "--seed-stride", type=positive, default=1, help="seeds first, first+stride, ... (split seeds between processes)"
    )
    p.add_argument(
        "--budget",
        type=int,
        default=None,
        help="training tokens per run, in whole-budget trials (synthetic 40, smollm2 8, smollm2-surrogate 60)",
    )
    p.add_argument(
        "--data-file", type=Path, default=DATA_FILE, help=f"the trials of {SURROGATE} (and the task of {DIRECT})"
    )
    p.add_argument(
        "--cache", type=Path, help="keep every trial's result in this JSONL file and answer repeated trials from it"
    )
    p.add_argument(
        "--replay-only", action="store_true", help="with --cache: stop (exit 1) at a trial the cache does not hold"
    )
    p.add_argument("--trials", type=int, help=f"{SURROGATE}: only the trials of index below this")
    p.add_argument(
        "--surrogate-noise",
        action="store_true",
        help=f"{SURROGATE}: add noise with the sigma of the model's held-out residuals, seeded by the trial",
    )
    p.add_argument("--quick", action="store_true", help="synthetic, 3 seeds, budget 16")
    p.add_argument("--plot", help="write the anytime plot (PNG) here")
    p.add_argument("--save", help="write every run's ledger (tokens, value, seconds per trial) as JSON here")
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="report runs saved with --save (same task and budget) instead of running anything",
    )
    return p, p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    parser, args = parse_args(argv)
    if args.merge:
        return merge(args.merge, args.plot)
    if args.quick:
        args.task, args.seeds, args.budget = "synthetic", 3, 16
    if args.replay_only and not args.cache:
        parser.error("--replay-only needs --cache")
    try:
        cached = open_cache(args.cache) if args.cache else {}
    except ValueError as e:
        parser.error(f"--cache: {e}")
    if args.task in (SURROGATE, DIRECT):
        require_data_file(args.data_file)
    the_task = replace(task(args.task, args.data_file), evolution=dict(args.set))
    budget_trials = args.budget or the_task.trials
    unit = the_task.budget.tokens
    limit = budget_trials * unit
    try:
        evo_config(the_task, args.first_seed)
    except ConfigError as e:
        print(f"--set: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    named = ",".join(f"{k}={v}" for k, v in args.set)
    label = {m: f"{m}[{named}]" if named and m in OURS else m for m in args.methods}
    runs: dict[str, list[Ledger]] = {label[m]: [] for m in args.methods}
    t0 = time.perf_counter()

    def build(spec: dict[str, Any]) -> Any:
        if args.task == SURROGATE:
            fitness = SurrogateFitness.from_file(args.data_file, noise=args.surrogate_noise, first=args.trials)
            print(f"surrogate: {fitness.describe()}, fitted in {time.perf_counter() - t0:.1f} s")
            return fitness
        fitness = make_fitness(spec)
        return CachedFitness(fitness, args.cache, args.replay_only, cached) if args.cache else fitness

    fitnesses: dict[str, Any] = {}  # one per fitness definition, shared by the runs (a QLoRA worker stays up)
    try:
        for seed in range(args.first_seed, args.first_seed + args.seeds * args.seed_stride, args.seed_stride):
            for m in args.methods:
                spec = fitness_spec(the_task, m)
                key = repr(sorted(spec.items()))
                if key not in fitnesses:
                    fitnesses[key] = build(spec)
                ledger = Ledger(fitnesses[key], limit, seed)
                RUNNERS[m](replace(the_task, fitness=spec), ledger, seed, budget_trials)
                runs[label[m]].append(ledger)
                if args.save:  # after every run, so a long benchmark stopped early keeps what it measured
                    save(args.save, args.task, limit, unit, runs)
                wall = ledger.points[-1][2] if ledger.points else 0
                print(f"seed {seed} {m:<14} best {num(best_at(ledger.points, limit))}  {wall:.0f} s", flush=True)
    finally:
        for fitness in fitnesses.values():
            fitness.close()
    print(f"\n{args.task}: {len(args.methods)} methods x {args.seeds} seeds, {time.perf_counter() - t0:.0f} s wall")
    report(runs, limit, unit, args.task)
    if args.plot:
        plot_fidelity(runs, limit, unit, f"{args.task}: median best so far, 25-75% band, {args.seeds} seeds", args.plot)
        print(f"\nplot: {args.plot}")


def merge(paths: list[str], plot_path: str | None) -> None:
    """One report over runs saved by several invocations (e.g. methods run in separate sessions)."""
    task_name, limit, unit, runs = load_saved(paths)
    report(runs, limit, unit, task_name)
    if plot_path:
        seeds = len(next(iter(runs.values())))
        plot_fidelity(runs, limit, unit, f"{task_name}: median best so far, 25-75% band, {seeds} seeds", plot_path)
        print(f"\nplot: {plot_path}")


if __name__ == "__main__":
    main()
