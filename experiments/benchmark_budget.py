"""The best config per unit of training compute: our default against random search, Optuna
TPE (alone, with Hyperband, with the median pruner), DEHB and SMAC3's multi-fidelity facade.

Every method gets the same training tokens per run and is read at 1/8, 1/4, 1/2 and all of
them (only fully trained configs count as found); wins and losses are Mann-Whitney tests over
seeds, per task and read-out. Tasks (``evobench.budget``): ``synthetic`` (fitness/synthetic.py's
learning curves, 40 trials' worth), ``pydoc`` (the surrogate of the real SmolLM2 QLoRA trials on
the pydoc corpus, 60) and ``chat`` (the surrogate of the real trials on chat conversations built
from the standard library's docstrings, 60). ``--split dev`` (seeds 0-29) is for choosing
settings, ``--split report`` (seeds 1000-1019) for the tables, which no setting was chosen on.

    pip install -e '.[bench]' && pip install --no-deps dehb loguru   # DEHB pins numpy < 2
    python experiments/benchmark_budget.py --split report --out experiments/results/budget_report.md
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

from evobench.budget import PEERS, SPLITS, TASK_NAMES, run_task, summary, tables
from evobench.methods.fidelity import METHODS, installed


def machine() -> str:
    """The CPU's model name and how many cores this process may use, e.g. ``AMD EPYC, 2 cores``."""
    try:
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0] if names else platform.machine()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", choices=TASK_NAMES, default=list(TASK_NAMES))
    p.add_argument("--methods", nargs="+", choices=METHODS, default=["ga", "ga-full", "ga-es", "ga-mf", *PEERS])
    p.add_argument("--split", choices=list(SPLITS), default="dev")
    p.add_argument("--seeds", type=int, help="only the first N seeds of the split")
    p.add_argument("--budget", type=int, help="whole-budget trials a run (default: the task's)")
    p.add_argument("--chat-trials", type=int, help="chat: fit its surrogate on the trials of index below this")
    p.add_argument("--quick", action="store_true", help="synthetic, 3 dev seeds, 16 trials, ga / random / TPE")
    p.add_argument("--out", type=Path, help="write the tables (markdown) here too")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.quick:
        args.tasks, args.split, args.seeds, args.budget = ["synthetic"], "dev", 3, 16
        args.methods = ["ga", "random", "optuna-tpe"]
    missing = [m for m in args.methods if not installed(m)]
    if missing:
        print(
            f"--methods: {', '.join(missing)} not installed (dehb: pip install --no-deps dehb loguru)", file=sys.stderr
        )
        raise SystemExit(2)
    seeds = SPLITS[args.split]
    seeds = seeds[: args.seeds] if args.seeds else seeds
    t0 = time.perf_counter()
    runs = [
        run_task(name, args.methods, seeds, args.budget, args.chat_trials if name == "chat" else None)
        for name in args.tasks
    ]
    text = "\n".join(
        [
            f"Measured {date.today()} on {machine()}, split {args.split} "
            f"(seeds {seeds.start}-{seeds.stop - 1}), {time.perf_counter() - t0:.0f} s; command: "
            f"python experiments/benchmark_budget.py {' '.join(argv if argv is not None else sys.argv[1:])}",
            "",
            "Median best validation perplexity at each share of the run's training tokens (only fully",
            "trained configs count); the share each method needs to reach the best peer's median final",
            "result; the default's verdicts against each method (Mann-Whitney, p < 0.05).",
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
