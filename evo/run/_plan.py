"""``evo plan CONFIG``: what a run would cost before it spends anything.

The engine counts the trials (the evolution settings, capped by the run budget) and the
whole per-trial budgets they train together (a rung or a PBT interval trains a fraction of
one); the fitness says what one trial costs through ``Fitness.plan`` (the contract's
:class:`evo.trial.Plan`: training tokens, each memory shape's estimated peak and micro-batch
per device, the cohort size, and seconds where it has measured speeds). This module only
counts and formats: the CLI hands it the fitness's answer, so it never imports a fitness.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evo.config import Mode, RunConfig
from evo.early_stopping import rung_sizes
from evo.space import Gene, GeneKind

if TYPE_CHECKING:
    from evo.trial import Plan

# A discrete range of at most this many values is planned value by value; a wider one (or a
# continuous one) at SAMPLES evenly spaced points of its (log) scale, its ends among them.
MAX_LEVELS = 16
SAMPLES = 5


def gene_values(config: RunConfig) -> dict[str, list[Any]]:
    """The values a trial of the run can give each gene: a searched gene's choices (a range's
    values, or points along it when there are many), a fixed value alone. What ``Fitness.plan`` reads."""
    values: dict[str, list[Any]] = {name: [value] for name, value in config.fixed.items()}
    for gene in config.space:
        values[gene.name] = _values(gene)
    return values


def _values(gene: Gene) -> list[Any]:
    if gene.kind is GeneKind.BOOL:
        return [False, True]
    if gene.choices is not None:
        return list(gene.choices)
    levels = gene.levels
    n = levels if levels is not None and levels <= MAX_LEVELS else SAMPLES
    return list(dict.fromkeys(gene.from_unit(k / (n - 1)) for k in range(n)))


@dataclass(frozen=True)
class Count:
    """The trials a run trains at most, the whole per-trial budgets they add up to, and how they come about."""

    trials: int
    budgets: float
    how: str
    bounded: bool  # False: only run_budget.train_tokens or hours ends it (then the tokens or seconds decide)


def count(config: RunConfig) -> Count:
    """Trials by the evolution settings (fresh ones: a result the cache holds costs nothing), capped by run_budget.trials."""
    settings, limits = config.evolution, config.run_budget
    mu, lam, generations = settings.population_size, settings.lambda_, settings.planned_generations
    bounded = limits is None or "generations" in (config.raw.get("evolution") or {}) or limits.trials is not None
    if settings.mode is Mode.PBT:
        intervals = len(settings.pbt.ends)
        trials, budgets, how = mu * intervals, float(mu), f"{mu} members x {intervals} intervals of the budget"
    elif settings.mode is Mode.MULTI_FIDELITY and settings.multi_fidelity is not None:
        rungs, eta = settings.multi_fidelity.rungs, settings.multi_fidelity.eta
        first, later = _halving(mu, rungs, eta), _halving(lam, rungs, eta)
        trials, budgets = first[0] + generations * later[0], first[1] + generations * later[1]
        how = f"{mu} initial + {generations} generations x {lam} children, each through rungs {_rungs(rungs)}"
    else:
        trials, budgets = mu + generations * lam, float(mu + generations * lam)
        how = f"{mu} initial + {generations} generations x {lam} children"
    if not bounded:  # generations left to the run budget
        how = f"{mu} initial, then {lam} children a generation until the run budget ends it"
    if config.baseline:
        trials, budgets, how = trials + 1, budgets + 1, f"1 baseline + {how}"
    if limits is not None and limits.trials is not None and limits.trials < trials:
        budgets *= limits.trials / trials
        trials, how = limits.trials, f"run_budget.trials ends it (the settings alone: {how})"
    return Count(trials, budgets, how, bounded)


def _halving(n: int, rungs: Sequence[float], eta: int) -> tuple[int, float]:
    """Trials and whole budgets of ``n`` individuals through successive halving: a continued rung adds its step only."""
    sizes = rung_sizes(n, rungs, eta)
    steps = [high - low for low, high in zip((0.0, *rungs), rungs)]
    return sum(sizes), sum(k * step for k, step in zip(sizes, steps))


def _rungs(rungs: Sequence[float]) -> str:
    return ", ".join(f"{r:.3g}" for r in rungs)


def print_plan(config: RunConfig, ask: Callable[..., Plan | None]) -> int:
    """``evo plan``: ``ask`` is the fitness's plan (``fitness.plan``: spec, gene values, budget, baseline)."""
    baseline = config.trial_config(config.baseline) if config.baseline else None
    plan = ask(config.fitness, gene_values(config), config.budget, baseline)
    print(render(config, plan, str(config.fitness.get("type"))), end="")
    return 0


def render(config: RunConfig, plan: Plan | None, fitness_type: str) -> str:
    """The plan as text: trials, tokens, then the fitness's memory table, cohort and time."""
    found = count(config)
    limits, lines = config.run_budget, []
    tokens = plan["tokens_per_trial"] if plan is not None else None
    trials, budgets = found.trials, found.budgets
    if limits is not None and limits.train_tokens is not None and tokens is not None:
        if not found.bounded or budgets * tokens[0] > limits.train_tokens:  # the tokens budget ends it first
            budgets = limits.train_tokens / tokens[0]
            trials = min(trials, math.ceil(budgets)) if found.bounded else math.ceil(budgets)
    if found.bounded or trials != found.trials:
        lines.append(f"trials: {trials:,} at most ({found.how}); a result the cache holds costs nothing")
    else:
        lines.append(f"trials: as many as run_budget allows ({found.how}, until it ends)")
    lines.append(_tokens_line(config, tokens, budgets, found.bounded or trials != found.trials))
    if plan is None:
        lines.append(f"the {fitness_type} fitness has no memory plan (it trains no model)")
        return "\n".join(lines) + "\n"
    lines += plan["about"]
    lines += _memory_table(plan)
    lines += _cohort_lines(config, plan)
    lines.append(_time_line(config, plan, budgets))
    lines += [f"note: {note}" for note in plan["notes"]]
    return "\n".join(lines) + "\n"


def _tokens_line(config: RunConfig, tokens: list[int] | None, budgets: float, bounded: bool) -> str:
    if tokens is None:
        return f"training: {_budget(config)} a trial, {budgets:,.4g} whole budgets in all"
    low, high = tokens
    each = f"{low:,}" if low == high else f"{low:,} to {high:,} (by the batch genes)"
    total = f"{budgets * low:,.0f}" if low == high else f"{budgets * low:,.0f} to {budgets * high:,.0f}"
    limit = config.run_budget.train_tokens if config.run_budget is not None else None
    if limit is not None and budgets * low >= limit:
        total = f"{limit:,} (run_budget.train_tokens)"
    return (
        f"training tokens: {each} a trial ({_budget(config)}), {total} in all"
        if bounded
        else (f"training tokens: {each} a trial ({_budget(config)})")
    )


def _budget(config: RunConfig) -> str:
    budget = config.budget
    return f"budget.tokens {budget.tokens:,}" if budget.tokens is not None else f"budget.steps {budget.steps:,}"


def _memory_table(plan: Plan) -> list[str]:
    devices = plan["devices"]
    header = ["shape", "peak", *devices]
    rows = [
        [shape["shape"], _size(shape["peak_mb"]), *("-" if m is None else str(m) for m in shape["micro_batch"])]
        for shape in plan["shapes"]
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = [
        "memory: each shape's estimated peak, the base included, at its worst over the other genes; the",
        "micro-batch each device trains it at (below the shape's: its batches cut in pieces, the same",
        "effective batch; -: not even micro-batch 1 fits)",
    ]
    for row in [header, *rows]:
        out.append("  " + "  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]))
    largest = max(plan["shapes"], key=lambda s: s["peak_mb"])
    for shape in dict.fromkeys((largest["shape"], plan["shapes"][-1]["shape"])):
        parts = next(s["parts"] for s in plan["shapes"] if s["shape"] == shape)
        out.append(f"  largest parts of {shape}: {parts}")
    misfits = [
        f"{device}: {', '.join(s['shape'] for s in plan['shapes'] if s['micro_batch'][i] is None)}"
        for i, device in enumerate(devices)
        if any(s["micro_batch"][i] is None for s in plan["shapes"])
    ]
    fits_all = [d for i, d in enumerate(devices) if all(s["micro_batch"][i] is not None for s in plan["shapes"])]
    if misfits:
        out.append("would not fit even at micro-batch 1: " + "; ".join(misfits))
    if fits_all:
        out.append(f"every shape trains (at some micro-batch) on: {', '.join(fits_all)}")
    return out


def _cohort_lines(config: RunConfig, plan: Plan) -> list[str]:
    which = "the baseline's shape" if config.baseline else "the largest shape"
    sizes = ", ".join(f"{d} {'-' if k is None else k}" for d, k in zip(plan["devices"], plan["cohort"]))
    return [f"cohort: trials of {which} trained at once (fitness.cohort, within memory): {sizes}"]


def _time_line(config: RunConfig, plan: Plan, budgets: float) -> str:
    seconds = plan["seconds_per_trial"]
    if seconds is None:
        return "wall time: unknown until the model has run on this device (its speeds are measured as it runs)"
    devices = config.executor.devices
    workers = len(devices) if isinstance(devices, (list, tuple)) and devices else 1
    low, high = (budgets * s / workers for s in seconds)
    limit = config.run_budget.hours if config.run_budget is not None else None
    span = _hours(low) if math.isclose(low, high, rel_tol=0.05) else f"{_hours(low)} to {_hours(high)}"
    on = f"on {workers} device{'s' if workers > 1 else ''}, from measured speeds"
    if limit is not None and low / 3600 > limit:
        return f"wall time: run_budget.hours ends it after {limit:g} h (its trials would take about {span} {on})"
    return f"wall time: about {span} {on}"


def _hours(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _size(mb: float) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB" if mb >= 10 else f"{mb:.1f} MB"
