"""The benchmarks' anytime plots: median best so far with its 25-75% band, one line a method."""

from __future__ import annotations

import math

import numpy as np

from evobench.ledger import best_at
from evobench.tasks.bbob import BBOB_NAMES


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: the benchmarks run on machines without a display
    import matplotlib.pyplot as plt

    return plt


def plot_bbob(curves: dict, methods: list[str], problems: list[tuple[int, int]], seeds: int, path: str) -> None:
    """One panel per problem: log10 best precision against evaluations."""
    plt = _pyplot()
    cols = min(4, len(problems))
    rows = math.ceil(len(problems) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, (function, dim) in zip(axes.flat, problems):
        for m in methods:
            logs = np.log10(np.array([curves[m, function, dim, s] for s in range(seeds)]))
            q1, med, q3 = np.percentile(logs, [25, 50, 75], axis=0)
            n = np.arange(1, logs.shape[1] + 1)
            (line,) = ax.plot(n, med, label=m, lw=1.5)
            ax.fill_between(n, q1, q3, color=line.get_color(), alpha=0.15, lw=0)
        ax.set_title(f"f{function} {BBOB_NAMES[function]}, d={dim}", fontsize=9)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("log10 best precision")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(problems) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"BBOB on a mixed space: median best-so-far, 25-75% band, {seeds} seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_fidelity(runs: dict[str, list], limit: int, unit: int, title: str, path: str) -> None:
    """Best whole-budget validation perplexity against training tokens spent, in whole trials."""
    plt = _pyplot()
    grid = np.linspace(0, limit, 200)
    fig, ax = plt.subplots(figsize=(8, 5))
    for m, ledgers in runs.items():
        curves = np.array([[best_at(ledger.points, x) for x in grid] for ledger in ledgers])
        q1, med, q3 = np.percentile(curves, [25, 50, 75], axis=0, method="lower")
        q1, med, q3 = (np.where(np.isfinite(q), q, np.nan) for q in (q1, med, q3))  # not reached yet: no line
        (line,) = ax.plot(grid / unit, med, label=m, lw=1.6)
        ax.fill_between(grid / unit, q1, q3, color=line.get_color(), alpha=0.12, lw=0)
    ax.set(
        xlabel="training tokens spent, in whole-budget trials",
        ylabel="best validation perplexity (whole budget)",
        title=title,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
