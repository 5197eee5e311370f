"""The figures. Each takes the run data and a path, draws, and returns its series."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")  # headless: plots are files, never windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from evo.reporting._importance import why_none  # noqa: E402
from evo.reporting._rundata import RunData  # noqa: E402
from evo.reporting.plots._importance_figure import importance_figure  # noqa: E402
from evo.space import canonical  # noqa: E402
from evo.storage import BASELINE_GENERATION  # noqa: E402
from evo.trial import TrialStatus  # noqa: E402

DPI = 110
FAILED_COLOR = "#d62728"
TOP_TRIALS = 5


def _label(data: RunData, objective=None) -> str:
    objective = objective or data.objective
    arrow = "lower is better" if objective.direction.value == "minimize" else "higher is better"
    return f"{objective.name} ({arrow})"


def _use_log(values) -> bool:
    values = [v for v in values if v is not None and v > 0]
    return bool(values) and max(values) / min(values) > 3


def _log_y(ax) -> None:
    """Log scale with plain numbers (12, 20, 50) rather than 2x10^1."""
    ax.set_yscale("log")
    ax.yaxis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(1.2, 1.4, 1.6, 1.8, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)))
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.tick_params(axis="y", which="minor", labelsize=7)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _best_so_far(values, minimize: bool) -> list[float | None]:
    out, best = [], None
    for v in values:
        if v is not None and (best is None or (v < best if minimize else v > best)):
            best = v
        out.append(best)
    return out


# -- generation fitness ---------------------------------------------------------------
def generation_fitness(data: RunData, path: Path) -> dict[str, Any]:
    """Population best / median / worst with the interquartile band, every individual as a
    point, failures marked along the top, and the best-so-far line."""
    gens = sorted(data.populations)
    pop_values = {
        g: [v for v in (data.member_value(_trial(data, ind)) for ind in data.populations[g]) if v is not None]
        for g in gens
    }
    q = {g: np.percentile(v, [0, 25, 50, 75, 100]) if v else [np.nan] * 5 for g, v in pop_values.items()}
    lo_is_best = data.minimize
    series: dict[str, Any] = {
        "generation": gens,
        "best": [float(q[g][0] if lo_is_best else q[g][4]) for g in gens],
        "q1": [float(q[g][1]) for g in gens],
        "median": [float(q[g][2]) for g in gens],
        "q3": [float(q[g][3]) for g in gens],
        "worst": [float(q[g][4] if lo_is_best else q[g][0]) for g in gens],
        "points": [
            (e.generation, data.member_value(e.trial)) for e in data.evaluated if data.member_value(e.trial) is not None
        ],
        "failed": [e.generation for e in data.evaluated if e.trial.status is TrialStatus.FAILED],
    }
    per_gen_best = []
    for g in gens:
        values = [data.scored_value(e.trial) for e in data.evaluated if e.generation <= g and data.scored(e.trial)]
        per_gen_best.append((min(values) if lo_is_best else max(values)) if values else None)
    series["best_so_far"] = [v if v is None else float(v) for v in _best_so_far(per_gen_best, lo_is_best)]

    fig, ax = plt.subplots(figsize=(9, 5.5))
    ax.fill_between(
        gens, series["q1"], series["q3"], color="#1f77b4", alpha=0.18, label="population interquartile range"
    )
    ax.plot(gens, series["median"], color="#1f77b4", lw=1.5, label="population median")
    ax.plot(gens, series["worst"], color="#7f7f7f", lw=1, ls="--", label="population worst")
    ax.plot(gens, series["best"], color="#2ca02c", lw=1.5, label="population best")
    ax.step(gens, series["best_so_far"], where="post", color="black", lw=2, label="best so far (all trials)")
    if series["points"]:
        xs, ys = zip(*series["points"])
        jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(xs))
        ax.scatter(
            np.array(xs) + jitter, ys, s=14, color="#ff7f0e", alpha=0.6, label="individual (completed)", zorder=3
        )
    if data.baseline is not None and data.baseline.ok:
        ax.axhline(data.scored_value(data.baseline), color="#9467bd", ls=":", lw=1.5, label="untuned baseline")
    all_values = [y for _, y in series["points"]]
    if _use_log(all_values):
        _log_y(ax)
    if series["failed"]:
        counts = Counter(series["failed"])
        ax.scatter(
            list(counts),
            [1.0] * len(counts),
            transform=ax.get_xaxis_transform(),
            marker="x",
            s=40,
            color=FAILED_COLOR,
            label="failed trials (count above)",
            clip_on=False,
            zorder=4,
        )
        for g, n in counts.items():
            ax.annotate(
                str(n),
                (g, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(0, 5),
                textcoords="offset points",
                ha="center",
                fontsize=8,
                color=FAILED_COLOR,
            )
    ax.set_xlabel("generation")
    ax.set_ylabel(_label(data))
    ax.set_xticks(gens)
    ax.set_title(f"Fitness per generation: {data.run_dir.name}", pad=16)
    ax.legend(fontsize=8, loc="upper right" if lo_is_best else "lower right")
    ax.grid(alpha=0.3)
    _save(fig, path)
    return series


def _trial(data: RunData, individual):
    return next(t for t in data.trials if t.id == individual.trial_id) if individual.trial_id else None


# -- best so far against compute ---------------------------------------------------------
def best_vs_compute(data: RunData, path: Path) -> dict[str, Any]:
    """Best-so-far against cumulative training compute and wall time: the HPO yardstick.

    Only trials run in this search count (not the baseline, not imported ones); a failed
    trial adds its compute and leaves the best unchanged.
    """
    trials = sorted((t for t in data.trials if t.generation > BASELINE_GENERATION), key=lambda t: t.finished_at or 0)
    unit = next((u for u in ("train_tokens", "steps") if all(u in t.metrics for t in trials if t.ok)), None)
    compute = [float(t.metrics.get(unit, 0)) if unit else 1.0 for t in trials]
    series = {
        "compute_unit": unit or "trials",
        "compute": np.cumsum(compute).tolist(),
        "wall_seconds": np.cumsum([t.duration or 0.0 for t in trials]).tolist(),
        "best_so_far": _best_so_far([data.value(t) for t in trials], data.minimize),
        "trial_ids": [t.id for t in trials],
    }
    total = series["wall_seconds"][-1] if trials else 0.0
    wall_unit, wall_scale = (
        ("hours", 3600.0) if total > 7200 else ("minutes", 60.0) if total > 120 else ("seconds", 1.0)
    )
    wall = [s / wall_scale for s in series["wall_seconds"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    xlabels = {
        "train_tokens": "training tokens (cumulative)",
        "steps": "optimizer steps (cumulative)",
        "trials": "trials (cumulative)",
    }
    for ax, xs, xlabel in (
        (axes[0], series["compute"], xlabels[series["compute_unit"]]),
        (axes[1], wall, f"trial wall time (cumulative {wall_unit})"),
    ):
        ys = [np.nan if v is None else v for v in series["best_so_far"]]
        ax.step(xs, ys, where="post", color="black", lw=2, label="best so far")
        if data.baseline is not None and data.baseline.ok:
            ax.axhline(data.value(data.baseline), color="#9467bd", ls=":", label="untuned baseline")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel(_label(data))
    if _use_log([v for v in series["best_so_far"] if v is not None]):
        _log_y(axes[0])
    fig.suptitle("Best so far against compute")
    _save(fig, path)
    return series


# -- hyperparameter evolution ------------------------------------------------------------
def gene_evolution(data: RunData, path: Path) -> dict[str, Any]:
    """One panel per gene: values per generation, coloured by fitness; failures as grey x."""
    genes = list(data.config.space)
    cols = min(3, len(genes))
    rows = int(np.ceil(len(genes) / cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.2 * cols + 1, 2.7 * rows + 0.8), squeeze=False, layout="constrained"
    )
    values = [data.scored_value(e.trial) for e in data.evaluated if data.scored(e.trial)]
    # Colour by fitness, clipped at the 90th percentile so that a few terrible trials
    # do not wash out the differences between the good ones.
    lo, hi = (min(values), float(np.percentile(values, 90))) if values else (0.0, 1.0)
    if not data.minimize:
        lo, hi = float(np.percentile(values, 10)) if values else 0.0, max(values) if values else 1.0
    norm = matplotlib.colors.Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1e-9, clip=True)
    cmap = plt.get_cmap("viridis_r" if data.minimize else "viridis")
    jitter = np.random.default_rng(1).uniform(-0.18, 0.18, len(data.evaluated))
    series: dict[str, Any] = {}
    any_failed = False
    for ax, gene in zip(axes.flat, genes):
        points = [(e.generation, e.individual.genome.get(gene.name), data.value(e.trial)) for e in data.evaluated]
        series[gene.name] = points
        by_index = gene.choices is not None  # choices sit on evenly spaced rows, labelled
        ys = np.array([gene.index(v) if by_index else v for _, v, _ in points], dtype=float)
        xs = np.array([g for g, _, _ in points], dtype=float) + jitter
        ok = np.array([f is not None for _, _, f in points])
        if ok.any():
            ax.scatter(
                xs[ok], ys[ok], c=[p[2] for p in points if p[2] is not None], cmap=cmap, norm=norm, s=16, alpha=0.85
            )
        if (~ok).any():
            any_failed = True
            ax.scatter(xs[~ok], ys[~ok], marker="x", color="#7f7f7f", s=18)
        if by_index:
            ax.set_yticks(range(len(gene.choices)))
            ax.set_yticklabels([_short(c) for c in gene.choices], fontsize=7)
            ax.set_ylim(-0.5, len(gene.choices) - 0.5)
        elif gene.log:
            ax.set_yscale("log")
        ax.set_title(gene.name + (" (log scale)" if gene.log else ""), fontsize=9)
        ax.set_xlabel("generation", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(genes) :]:
        ax.axis("off")
    mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(
        mappable,
        ax=axes,
        shrink=0.8,
        extend="max" if data.minimize else "min",
        label=_label(data) + " (clipped at the 90th percentile)",
    )
    title = "Hyperparameters per generation, coloured by fitness"
    fig.suptitle(title + ("  (grey x: failed trial)" if any_failed else ""))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return series


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else canonical(value).replace('"', "")
    return text if len(text) <= 22 else text[:20] + "…"


# -- learning curves ------------------------------------------------------------------------
def learning_curves(data: RunData, path: Path) -> dict[int, Any]:
    """Train loss and intermediate validation curves of the best trials."""
    ok = [
        t
        for t in data.trials
        if data.scored(t) and t.generation > BASELINE_GENERATION and t.metrics.get("train_loss_curve")
    ]
    top = sorted(ok, key=data.scored_value, reverse=not data.minimize)[:TOP_TRIALS]
    # A validation panel only says something with intermediate points (eval_every > 0);
    # the final value alone is already in every legend entry.
    has_val = any(len(t.metrics.get("val_perplexity_curve") or []) >= 2 for t in top)
    fig, axes = plt.subplots(1, 2 if has_val else 1, figsize=(11 if has_val else 6.5, 4.5), squeeze=False)
    series: dict[int, Any] = {}  # by trial id
    for rank, trial in enumerate(top):
        label = f"trial {trial.id}: {data.objective.name} {data.value(trial):.4g}"
        loss = np.array(trial.metrics["train_loss_curve"], dtype=float)
        series[trial.id] = {"train_loss": loss.tolist(), "val": trial.metrics.get("val_perplexity_curve") or []}
        axes[0, 0].plot(loss[:, 0], loss[:, 1], lw=1.2, label=label, alpha=1 - 0.12 * rank)
        if has_val and series[trial.id]["val"]:
            val = np.array(series[trial.id]["val"], dtype=float)
            axes[0, 1].plot(val[:, 0], val[:, 1], marker="o", lw=1.2, label=label)
    axes[0, 0].set(xlabel="optimizer step", ylabel="training loss (nats per token)", title="Training loss")
    axes[0, 0].legend(fontsize=7)
    axes[0, 0].grid(alpha=0.3)
    if has_val:
        axes[0, 1].set(xlabel="optimizer step", ylabel="validation perplexity", title="Validation perplexity")
        axes[0, 1].legend(fontsize=7)
        axes[0, 1].grid(alpha=0.3)
    fig.suptitle(f"Learning curves of the {len(top)} best trials")
    _save(fig, path)
    return series


# -- Pareto front -------------------------------------------------------------------------
def pareto_front(data: RunData, path: Path) -> dict[str, Any]:
    """The first two objectives of every completed trial, the non-dominated ones joined."""
    a, b = data.objectives[0], data.objectives[1]
    points = [
        (t.values[a.name], t.values[b.name], t.id)
        for t in data.trials
        if data.scored(t) and t.generation > BASELINE_GENERATION
    ]
    sign = (1 if a.direction.value == "minimize" else -1, 1 if b.direction.value == "minimize" else -1)
    front = [
        p
        for p in points
        if not any(
            sign[0] * q[0] <= sign[0] * p[0] and sign[1] * q[1] <= sign[1] * p[1] and (q[0], q[1]) != (p[0], p[1])
            for q in points
        )
    ]
    front.sort()
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=14, color="#7f7f7f", alpha=0.6, label="trial")
    ax.plot([p[0] for p in front], [p[1] for p in front], "o-", color="#d62728", label="Pareto front")
    ax.set(xlabel=_label(data, a), ylabel=_label(data, b), title="Pareto front of the first two objectives")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)
    return {"points": points, "front": front}


# -- failures -------------------------------------------------------------------------------
def failures(data: RunData, path: Path) -> dict[str, Any]:
    """Failed trials run in each generation, stacked by reason (cache hits not counted)."""
    gens = data.generations
    fresh = [e for e in data.evaluated if not e.cached and e.trial.status is TrialStatus.FAILED]
    reasons = sorted({e.trial.reason.value if e.trial.reason else e.trial.status.value for e in fresh})
    counts = {
        r: [
            sum(
                1
                for e in fresh
                if e.generation == g and (e.trial.reason.value if e.trial.reason else e.trial.status.value) == r
            )
            for g in gens
        ]
        for r in reasons
    }
    fig, ax = plt.subplots(figsize=(8, 4))
    bottom = np.zeros(len(gens))
    for reason in reasons:
        ax.bar(gens, counts[reason], bottom=bottom, label=reason)
        bottom += counts[reason]
    ax.set(
        xlabel="generation",
        ylabel="failed trials",
        title="Failures per generation, by reason" if reasons else "Failures per generation: none",
    )
    ax.set_xticks(gens)
    # The default major locator is an AutoLocator (a MaxNLocator); the stub types it as a plain Locator.
    cast(matplotlib.ticker.MaxNLocator, ax.yaxis.get_major_locator()).set_params(integer=True)
    if reasons:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    _save(fig, path)
    return {"generation": gens, "counts": counts}


# Each figure's series are keyed by series name, except learning_curves': by trial id.
FIGURES: dict[str, Callable[[RunData, Path], dict[Any, Any]]] = {
    "generation_fitness": generation_fitness,
    "best_vs_compute": best_vs_compute,
    "gene_evolution": gene_evolution,
    "learning_curves": learning_curves,
    "pareto_front": pareto_front,
    "failures": failures,
    "importance": importance_figure,
}


def why_not(name: str, data: RunData) -> str | None:
    """Why a figure cannot be drawn for this run, or None when it can."""
    completed = [t for t in data.trials if data.scored(t) and t.generation > BASELINE_GENERATION]
    if name == "failures":
        return None if data.evaluated else "no generation has individuals yet"
    if not completed:
        return "no trial of the search has completed (every one failed or none has run)"
    if name == "generation_fitness" and not data.populations:
        return "no generation has finished yet"
    if name == "learning_curves" and not any(t.metrics.get("train_loss_curve") for t in completed):
        return "the fitness records no training-loss curves"
    if name == "pareto_front" and len(data.objectives) < 2:
        return "the run has a single objective"
    return why_none(data.run_dir) if name == "importance" else None
