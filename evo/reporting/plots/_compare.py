"""``evo compare``: best-so-far curves of several runs on one plot, aligned on compute."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evo.reporting._rundata import RunData, load_run
from evo.reporting.plots import NothingToPlot, drawing
from evo.storage import BASELINE_GENERATION


def compare_runs(run_dirs: Sequence[Path | str], out: Path | str) -> dict[str, Any]:
    """Overlay best-so-far against compute (training tokens or steps when every run records
    them, trials otherwise) and against trial wall time. Returns the series drawn."""
    runs = [load_run(d) for d in run_dirs]
    with drawing():
        return _draw(runs, out)


def _draw(runs: list[RunData], out: Path | str) -> dict[str, Any]:
    from evo.reporting.plots._figures import DPI, _best_so_far, _label, plt  # matplotlib loads only here

    names = {r.objective.name for r in runs}
    if len(names) > 1:
        raise NothingToPlot(f"the runs optimise different objectives ({', '.join(sorted(names))}); nothing to compare")
    units = ["train_tokens", "steps"]
    trials_of = {
        r.run_dir: sorted((t for t in r.trials if t.generation > BASELINE_GENERATION), key=lambda t: t.finished_at or 0)
        for r in runs
    }
    unit = next((u for u in units if all(u in t.metrics for ts in trials_of.values() for t in ts if t.ok)), "trials")
    series: dict[str, Any] = {"compute_unit": unit, "runs": {}}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for run in runs:
        trials = trials_of[run.run_dir]
        if not any(t.ok for t in trials):
            continue
        compute, wall, c, w = [], [], 0.0, 0.0
        for t in trials:
            c += float(t.metrics.get(unit, 0)) if unit != "trials" else 1.0
            w += (t.duration or 0.0) / 60
            compute.append(c)
            wall.append(w)
        best = _best_so_far([run.value(t) for t in trials], run.minimize)
        label = str(run.run_dir.name)
        series["runs"][label] = {"compute": compute, "wall_minutes": wall, "best_so_far": best}
        ys = [float("nan") if v is None else v for v in best]
        axes[0].step(compute, ys, where="post", lw=1.8, label=label)
        axes[1].step(wall, ys, where="post", lw=1.8, label=label)
    if not series["runs"]:
        raise NothingToPlot("none of the runs has a completed trial; nothing to compare")
    xlabel = {
        "train_tokens": "training tokens (cumulative)",
        "steps": "optimizer steps (cumulative)",
        "trials": "trials (cumulative)",
    }[unit]
    axes[0].set(xlabel=xlabel, ylabel=_label(runs[0]))
    axes[1].set(xlabel="trial wall time (cumulative minutes)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Best so far against compute: {len(series['runs'])} runs")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return series
