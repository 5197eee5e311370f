"""The memory estimate against measured peaks on the CPU: the tiny Llama and SmolLM2-135M.

Each case (``evobench.memory``) is a cohort of one to four trials whose genes change a
trial's memory (micro-batch, sequence length, rank, target modules, gradient checkpointing,
optimizer, dropout); all of one model run in one worker process, as the fitness runs them.
Prints the table of estimated against measured MB over the resident base, and writes it
with the date, the machine and the command to ``memory.md`` (``memory_quick.md`` for
``--quick``) and ``.json`` in ``--out``. The goal: every case within 25%.

    python experiments/benchmark_memory.py            # tiny Llama and SmolLM2-135M: about 20 minutes on 2 cores
    python experiments/benchmark_memory.py --quick    # three tiny-Llama cases, well under a minute

``--live-tensors`` runs the worker with ``MALLOC_MMAP_THRESHOLD_=65536``: glibc then returns every
freed block of 64 KiB or more at once, so the peak RSS follows the live tensors (what the estimate
models, and what a CUDA allocator's peak counts) instead of the heap glibc keeps (``memory_live.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from evobench import memory
from evobench.collect.loop import cpu_model

RESULTS = Path(__file__).resolve().parent / "results"
LIVE_THRESHOLD = 65536  # bytes: blocks this large are mmapped, and unmapped when freed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three tiny-Llama cases only")
    parser.add_argument("--live-tensors", action="store_true", help="glibc returns freed blocks at once")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where memory[_quick][_live].md and .json go")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # a shared CPU: torch's spinning threads only add noise
    if args.live_tensors:  # read by glibc when the spawned worker starts
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(LIVE_THRESHOLD)
    with tempfile.TemporaryDirectory(prefix="evo-memory-") as scratch:
        cache = Path(scratch) / "cache"  # a fresh cache: no calibration from earlier runs, token caches rebuilt
        runs = [
            (
                memory.TINY,
                str(memory.tiny_model(Path(scratch) / "tiny")),
                memory.QUICK_CASES if args.quick else memory.TINY_CASES,
            )
        ]
        if not args.quick:
            runs.append((memory.SMOLLM2, "smollm2-135m", memory.SMOLLM2_CASES))
        start, measurements = time.perf_counter(), []
        for label, model, cases in runs:
            print(f"{label}: {len(cases)} cases ...", flush=True)
            measurements += memory.measure(memory.spec_for(model, cache), cases, label)
    seconds = time.perf_counter() - start
    missed = memory.off_goal(measurements)
    flags = [flag for flag, on in (("--quick", args.quick), ("--live-tensors", args.live_tensors)) if on]
    command = " ".join(["python experiments/benchmark_memory.py", *flags])
    machine = f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores, {platform.platform()}"
    heading = (
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, `{command}` ({seconds:.0f} s), {machine}, "
        f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; float32 compute; MB over the resident base"
        + (f"; MALLOC_MMAP_THRESHOLD_={LIVE_THRESHOLD}" if args.live_tensors else "")
    )
    verdict = (
        f"every case within {memory.GOAL_PCT:.0f}%"
        if not missed
        else f"{len(missed)} of {len(measurements)} cases off by more than {memory.GOAL_PCT:.0f}%: "
        + ", ".join(f"{m.model} {m.case} ({m.error_pct:+.0f}%)" for m in missed)
    )
    text = f"{heading}\n\n{memory.table(measurements)}\n\n{verdict}\n"
    print(f"\n{text}")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "memory" + ("_quick" if args.quick else "") + ("_live" if args.live_tensors else "")
    (args.out / f"{stem}.md").write_text(text)
    record = {"command": command, "seconds": seconds, "machine": machine, "goal_pct": memory.GOAL_PCT}
    record["measurements"] = [{**asdict(m), "error_pct": m.error_pct} for m in measurements]
    (args.out / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
