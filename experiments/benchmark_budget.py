"""The best config per unit of training compute: our default against the strongest peers at
equal training tokens, read at 1/16, 1/8, 1/4, 1/2 and all of them.

Peers, each through its own API (``evobench.methods``): random search, Optuna TPE (alone, with
Hyperband, with the median pruner), DEHB, SMAC3's multi-fidelity facade, Syne Tune 0.16's ASHA
and BOHB, Syne Tune 0.13's MOBSTER, HyperTune and DyHPO (in a virtual environment of their
own), NePS 0.17's hyperband and ifbo. Only fully trained configs count as found; every token
trained is paid, a resumed trial pays only its increment. Wins and losses are Mann-Whitney tests
over seeds, per task and read-out. Tasks: ``synthetic`` (fitness/synthetic.py's learning curves,
40 trials' worth), ``pydoc`` and ``chat`` (surrogates of real SmolLM2 QLoRA trials, 60), and
YAHPO Gym's ``fcnet``, ``nb301`` and ``taskset`` surrogates (an instance a task, 40; their data
is not in this repository: ``evobench.tasks.yahpo``). ``--split dev`` (seeds 0-29) is for
choosing settings, ``--split report`` (seeds 1000-1019) for the tables, which no setting was
chosen on. Runs are cached per (task, method, seed) with ``--cache``, so a stopped benchmark
keeps what it measured, and run in ``--jobs`` processes at ``--nice``.

    pip install -e '.[bench,peers]' && pip install --no-deps dehb loguru   # DEHB pins numpy < 2
    python experiments/benchmark_budget.py --split dev --jobs 2 --nice 10 --cache ~/.cache/evobench/budget \
        --out experiments/results/budget_peers_dev.md
    python experiments/benchmark_budget.py --quick   # synthetic, 3 seeds, 16 trials, a few methods
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

from evobench.budget import OURS_DEFAULT, PEERS, SPLITS, TASK_NAMES, runs_by_task, summary, tables
from evobench.budget_runs import BenchmarkJob, run_jobs
from evobench.methods.fidelity import METHODS, missing
from evobench.tasks import yahpo


def machine() -> str:
    """The CPU's model name and how many cores this process may use, e.g. ``AMD EPYC, 2 cores``."""
    try:
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0] if names else platform.machine()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", choices=TASK_NAMES, default=["synthetic", "pydoc", "chat"])
    p.add_argument("--methods", nargs="+", choices=METHODS, default=["ga", *PEERS])
    p.add_argument("--split", choices=list(SPLITS), default="dev")
    p.add_argument("--seeds", type=int, help="only the first N seeds of the split")
    p.add_argument("--budget", type=int, help="whole-budget trials a run (default: the task's)")
    p.add_argument("--chat-trials", type=int, help="chat: fit its surrogate on the trials of index below this")
    p.add_argument("--quick", action="store_true", help="synthetic, 3 dev seeds, 16 trials, ga / random / TPE")
    p.add_argument("--jobs", type=int, default=1, help="runs at once, each in a process of its own")
    p.add_argument("--nice", type=int, default=0, help="lower the runs' priority by this much")
    p.add_argument("--cache", type=Path, help="keep each (task, method, seed) run here; a rerun reads it back")
    p.add_argument("--cached-only", action="store_true", help="report the runs --cache has, run nothing")
    p.add_argument("--out", type=Path, help="write the tables (markdown) here too")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.quick:
        args.tasks, args.split, args.seeds, args.budget = ["synthetic"], "dev", 3, 16
        args.methods = ["ga", "random", "optuna-tpe"]
    args.tasks = yahpo.expand(args.tasks)
    refused = [why for m in args.methods if (why := missing(m))]
    refused += [why for t in args.tasks if t not in ("synthetic", "pydoc", "chat") and (why := yahpo.missing(t))]
    if refused:
        print("; ".join(refused), file=sys.stderr)
        raise SystemExit(2)
    if args.jobs < 1:
        print(f"--jobs: {args.jobs} is not a number of processes", file=sys.stderr)
        raise SystemExit(2)
    seeds = SPLITS[args.split]
    seeds = seeds[: args.seeds] if args.seeds else seeds
    jobs = [
        BenchmarkJob(task, method, seed, args.budget, args.chat_trials if task == "chat" else None)
        for seed in seeds  # seed by seed: a benchmark stopped early has whole seeds in its cache
        for task in args.tasks
        for method in args.methods
    ]
    t0 = time.perf_counter()
    outcomes = run_jobs(jobs, args.cache, args.jobs, args.nice, lambda line: print(line, flush=True), args.cached_only)
    if not outcomes:
        print(f"--cached-only: {args.cache} has none of these runs", file=sys.stderr)
        raise SystemExit(2)
    runs = runs_by_task(outcomes)
    command = " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join(
        [
            f"Measured {date.today()} on {machine()}, split {args.split} (seeds {seeds.start}-{seeds.stop - 1}), "
            f"{time.perf_counter() - t0:.0f} s in {args.jobs} processes (cached runs count their first time "
            f"in 's a run'); command: python experiments/benchmark_budget.py {command}",
            "",
            "Median best result (validation perplexity; YAHPO: its validation loss or error) at each share of the",
            "run's training compute (only fully trained configs count); the share each method needs to reach the",
            f"best peer's median final result; {OURS_DEFAULT}'s verdicts against each method (Mann-Whitney, p < 0.05).",
            "",
            tables(runs),
            "### Over the tasks",
            "",
            summary(runs),
            "",
        ]
    )
    print("\n" + text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
