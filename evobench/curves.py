"""BBOB runs kept on disk: one JSON line per finished run, its curve cut to its improvements.

Runs are appended as they finish, so a stopped benchmark resumes where it was and a report
is a re-read; a line torn by a kill is skipped and its run done again.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from evobench.methods.bbob import one_run
from fitness.qlora.worker.lifeline import die_with_parent

Key = tuple[str, int, int, int]  # method, function, dimension, seed


def compress(curve: Iterable[float]) -> list[list[float]]:
    """A best-so-far curve as the evaluations where it improved: ``[[n, log10 value], ...]``."""
    out: list[list[float]] = []
    for n, value in enumerate(curve, start=1):
        if not out or math.log10(value) < out[-1][1]:
            out.append([n, round(math.log10(value), 6)])
    return out


def expand(steps: list[list[float]], budget: int) -> np.ndarray:
    """The log10 best-so-far after each of ``budget`` evaluations, from :func:`compress`'s output."""
    curve = np.empty(budget)
    for (n, value), nxt in zip(steps, steps[1:] + [[budget + 1, 0.0]]):
        curve[int(n) - 1 : min(int(nxt[0]) - 1, budget)] = value
    return curve


def load(path: Path, budget: int) -> dict[Key, np.ndarray]:
    """The runs recorded in ``path`` at this budget; a torn last line (a killed run) is skipped."""
    runs: dict[Key, np.ndarray] = {}
    if not path.exists():
        return runs
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row["budget"] == budget:
            runs[row["method"], row["function"], row["dim"], row["seed"]] = expand(row["best"], budget)
    return runs


def run_missing(path: Path, keys: list[Key], budget: int, jobs: int) -> None:
    """Runs every key not yet in ``path`` on ``jobs`` processes, appending each as it finishes."""
    done = load(path, budget)
    todo = [k for k in keys if k not in done]
    if not todo:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=die_with_parent, initargs=(os.getpid(),))
    with pool, path.open("a") as out:
        if path.stat().st_size and not path.read_text().endswith("\n"):
            out.write("\n")  # a line torn by a kill stays alone on its line
        futures = [pool.submit(one_run, (m, f, d, s, budget)) for m, f, d, s in todo]
        for i, future in enumerate(as_completed(futures), start=1):
            (method, function, dim, seed), curve, seconds = future.result()
            row = {"method": method, "function": function, "dim": dim, "seed": seed, "budget": budget}
            out.write(json.dumps({**row, "seconds": round(seconds, 3), "best": compress(curve)}) + "\n")
            out.flush()
            if i % 100 == 0 or i == len(todo):
                print(f"  {i}/{len(todo)} runs, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
