"""The whole GPU proof in one call: environment, the gpu tests, cohorts at SmolLM2-135M's shape, kill and resume.

Each step runs in its own process under its own time limit (a slow one is killed and
recorded as timed out; the rest still run); on one H200 the whole check ends within 8
minutes. It writes gpu_check.md and gpu_check.json into --out and prints the table.

    python experiments/gpu_check.py                          # on a CUDA machine
    python experiments/gpu_check.py --out $OUT               # a lent machine: write where it is fetched from
    python experiments/gpu_check.py --device cpu --quick     # the same steps on a CPU, tiny model: a minute or two

See docs/gpu.md, also for carrying bitsandbytes and deap to a machine without network
(experiments/gpu_wheels.py).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from evobench import gpu_check
from evobench.gpu_check import report
from evobench.paths import EXPERIMENTS, ROOT

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing comes from the hub: every model is built here


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="the tiny model and K = 1, 2, 4 (for a CPU)")
    parser.add_argument("--ks", help="cohort sizes of the cohort step, comma-separated (default 1,2,4,8,16,32)")
    parser.add_argument("--out", type=Path, default=EXPERIMENTS / "results", help="where gpu_check.md/.json go")
    parser.add_argument("--budget", type=float, help="seconds for the whole check (default 480; --quick 900)")
    parser.add_argument("--only", help="run only these steps, comma-separated: " + ", ".join(gpu_check.LIMITS))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    default_ks = gpu_check.QUICK_KS if args.quick else gpu_check.Options().ks
    ks = tuple(int(k) for k in args.ks.split(",")) if args.ks else default_ks
    only = tuple(args.only.split(",")) if args.only else ()
    unknown = sorted(set(only) - set(gpu_check.LIMITS))
    if unknown:
        raise SystemExit(f"gpu_check: no step {unknown[0]!r} (steps: {', '.join(gpu_check.LIMITS)})")
    if args.device == "cpu":  # torch's threads spin against other jobs: on a busy 2-core machine 5 min, not 1
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    options = gpu_check.Options(device=args.device, quick=args.quick, ks=ks, root=str(ROOT))
    budget = args.budget or (gpu_check.QUICK_BUDGET_S if args.quick else gpu_check.BUDGET_S)
    started, start = report.now(), time.monotonic()
    print(f"gpu check on {args.device}{' (quick)' if args.quick else ''}, {budget:.0f} s at most", flush=True)

    def echo(result: gpu_check.StepResult) -> None:
        print(f"  {result.name}: {result.status.value} in {result.seconds:.0f} s: {result.summary}", flush=True)

    results = gpu_check.run_steps(gpu_check.steps(args.quick, only), options, budget_s=budget, echo=echo)
    md, js = report.write(args.out, results, options, started, time.monotonic() - start)
    print()
    print("\n".join(report.table(results)))
    print(f"\nwrote {md} and {js}")
    ok = all(r.status in (gpu_check.StepStatus.PASSED, gpu_check.StepStatus.SKIPPED) for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
