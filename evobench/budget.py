"""The run-budget benchmark: every method given the same training tokens, read at 1/16, 1/8,
1/4, 1/2 and all of it, on seeds split into a development set (for choosing settings) and a
report set (for the tables; no setting was chosen on it).

A task is a fitness, its search space and a run budget in whole-budget trials; "best" is the
best fully trained trial within the tokens spent (``evobench.ledger``). The verdicts are
Mann-Whitney tests over seeds (``evobench.stats.compare``), per task and read-out; the runs
themselves come from ``evobench.budget_runs`` (cached, in parallel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from evobench.budget_runs import BenchmarkOutcome
from evobench.ledger import best_at
from evobench.stats import budget_to_reach, compare, lower_median
from evobench.tasks import yahpo
from evobench.tasks.fidelity import TASKS, Task, surrogate_task
from evobench.tasks.qlora_data import DATA_FILE

READOUTS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
LABELS = ("1/16", "1/8", "1/4", "1/2", "all")
SPLITS = {"dev": range(0, 30), "report": range(1000, 1020)}
CHAT_DATA = Path(__file__).resolve().parents[1] / "experiments" / "data" / "smollm2_stdlib_chat_trials.jsonl"
TASK_NAMES = ("synthetic", "pydoc", "chat", *yahpo.TASK_NAMES)
OURS_DEFAULT = "ga"
PEERS = (
    "random",
    "optuna-tpe",
    "optuna-tpe-hb",
    "optuna-tpe-median",
    "dehb",
    "smac",
    "st-asha",
    "st-bohb",
    "st-mobster",
    "st-hypertune",
    "st-dyhpo",
    "neps-hyperband",
    "neps-ifbo",
)


@dataclass
class Runs:
    """One task's runs: by method, one ledger's points per seed."""

    task: str
    limit: int  # training tokens of a run
    points: dict[str, list[list[tuple]]] = field(default_factory=dict)
    fitness: str = ""  # what it describes itself as (a surrogate: its model and how many trials it was fitted on)
    seconds: dict[str, list[float]] = field(default_factory=dict)  # wall time of each run, by method

    def best(self, method: str, share: float) -> np.ndarray:
        return np.array([best_at(p, share * self.limit) for p in self.points[method]])

    def median(self, method: str, share: float) -> float:
        return lower_median(self.best(method, share))

    def to_reach(self, method: str, target: float) -> float:
        """The median share of the budget ``method`` needs to reach ``target`` (inf: not within it)."""
        return lower_median([budget_to_reach(p, target) for p in self.points[method]]) / self.limit


def make_task(name: str, trials: int | None = None) -> tuple[Task, Any]:
    """The task and a factory for its fitness (the surrogates fit once, a few seconds, on the
    data's trials of index below ``trials``: the chat data is still being collected)."""
    if name == "synthetic":
        from fitness import make_fitness

        task = TASKS["synthetic"]
        return task, lambda: make_fitness(task.fitness)
    if name in yahpo.TASK_NAMES:
        return yahpo.task_and_fitness(name)
    from evobench.tasks.surrogate_fitness import SurrogateFitness

    data = {"pydoc": DATA_FILE, "chat": CHAT_DATA}[name]
    return surrogate_task(data), lambda: SurrogateFitness.from_file(data, first=trials)


def runs_by_task(outcomes: list[BenchmarkOutcome]) -> list[Runs]:
    """The outcomes as one :class:`Runs` per task, tasks and methods in the order first met."""
    by_task: dict[str, Runs] = {}
    for o in outcomes:
        runs = by_task.setdefault(o.job.task, Runs(o.job.task, o.limit, fitness=o.fitness))
        runs.points.setdefault(o.job.method, []).append([tuple(p) for p in o.points])
        runs.seconds.setdefault(o.job.method, []).append(o.seconds)
    return list(by_task.values())


def best_peer(runs: Runs) -> str | None:
    peers = [m for m in runs.points if m in PEERS]
    return min(peers, key=lambda m: runs.median(m, 1.0)) if peers else None


def target_of(runs: Runs) -> float:
    """The best peer's median final result: what "to the best peer's final" is measured against."""
    top = best_peer(runs)
    return runs.median(top, 1.0) if top else math.nan


def verdicts(runs: Runs, ours: str, peer: str) -> list[int]:
    """+1 / -1 / 0 (win, loss, tie by Mann-Whitney) of ``ours`` against ``peer`` at each read-out."""
    return [compare(runs.best(ours, r), runs.best(peer, r)) for r in READOUTS]


def tables(all_runs: list[Runs], ours: str = OURS_DEFAULT) -> str:
    """Markdown: per task the median best at each read-out, the verdicts of ``ours`` against each
    method, the share of the budget each needs to reach the best peer's final result, and its
    median wall time a run."""
    out = []
    labels = ", ".join(LABELS)
    for runs in all_runs:
        top, target = best_peer(runs), target_of(runs)
        seeds = len(next(iter(runs.points.values())))
        mine = ours in runs.points
        out += [
            f"### {runs.task}: {runs.limit:,} training tokens a run, {seeds} seeds",
            f"Fitness: `{runs.fitness}`.",
            "",
            "| method | "
            + " | ".join(LABELS)
            + " | to the best peer's final | s a run |"
            + (f" {ours} vs it: {labels} |" if mine else ""),
            "|---|" + "---|" * (len(LABELS) + 2) + ("---|" if mine else ""),
        ]
        for method in runs.points:
            medians = " | ".join(f"{runs.median(method, r):.4g}" for r in READOUTS)
            reach = runs.to_reach(method, target) if top else math.inf
            timed = runs.seconds.get(method)
            seconds = f"{np.median(timed):.1f}" if timed else "-"
            row = f"| {method} | {medians} | {_share(reach)} | {seconds} |"
            if mine:
                row += " - |" if method == ours else f" {', '.join(_word(v) for v in verdicts(runs, ours, method))} |"
            out.append(row)
        if top:
            out += ["", f"Best peer by its median final result: {top} ({target:.4g})."]
        out.append("")
    return "\n".join(out)


def summary(all_runs: list[Runs], ours: str = OURS_DEFAULT) -> str:
    """Over the tasks, at each read-out: against each other method, on how many tasks the median
    best of ``ours`` is lower / higher and its Mann-Whitney wins / losses; every method's mean
    rank (by median best, 1 the lowest); and the share of the budget each needs to reach the best
    peer's final result on the median task."""
    present = [r for r in all_runs if ours in r.points]
    methods = list(dict.fromkeys(m for r in present for m in r.points))
    head = " | ".join(LABELS)
    lower = [
        f"| {ours}'s median against | {head} |",
        "|---|" + "---|" * len(LABELS),
    ]
    for other in (m for m in methods if m != ours):
        both = [r for r in present if other in r.points]
        cells = []
        for i, share in enumerate(READOUTS):
            below = sum(r.median(ours, share) < r.median(other, share) for r in both)
            above = sum(r.median(ours, share) > r.median(other, share) for r in both)
            tested = [verdicts(r, ours, other)[i] for r in both]
            cells.append(f"{below}/{above} ({tested.count(1)}+ {tested.count(-1)}-)")
        lower.append(f"| {other} (of {len(both)}) | " + " | ".join(cells) + " |")
    ranks = [
        f"| mean rank of {len(methods)} | {head} | to the best peer's final, median task |",
        "|---|" + "---|" * (len(LABELS) + 1),
    ]
    complete = [r for r in present if all(m in r.points for m in methods)]
    for method in methods:
        means = [
            np.mean([_ranks(r, methods, share)[method] for r in complete]) if complete else math.nan
            for share in READOUTS
        ]
        reach = lower_median([r.to_reach(method, target_of(r)) for r in complete]) if complete else math.inf
        ranks.append(f"| {method} | " + " | ".join(f"{m:.2f}" for m in means) + f" | {_share(reach)} |")
    return "\n".join(
        [
            f"Tasks where {ours}'s median best is lower / higher than the other's (Mann-Whitney: significant wins+, losses-):",
            "",
            *lower,
            "",
            f"Mean rank by median best over the {len(complete)} tasks every method ran, and the median over them of the",
            "share of the budget each needs to reach the best peer's median final result:",
            "",
            *ranks,
        ]
    )


def _ranks(runs: Runs, methods: list[str], share: float) -> dict[str, float]:
    values = [runs.median(m, share) for m in methods]
    return dict(zip(methods, rankdata(values, method="average")))


def _share(reach: float) -> str:
    return f"{reach:.2f}x" if math.isfinite(reach) else "not reached"


def _word(v: int) -> str:
    return {1: "won", -1: "lost", 0: "tie"}[v]
