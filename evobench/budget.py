"""The run-budget benchmark: every method given the same training tokens, read at 1/8, 1/4,
1/2 and all of it, on seeds split into a development set (for choosing settings) and a
report set (for the tables; no setting was chosen on it).

A task is a fitness, its search space and a run budget in whole-budget trials; "best" is the
best fully trained trial within the tokens spent (``evobench.ledger``). The verdicts are
Mann-Whitney tests over seeds (``evobench.stats.compare``), per task and read-out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from evobench.ledger import Ledger, best_at
from evobench.methods.fidelity import RUNNERS, fitness_spec
from evobench.stats import budget_to_reach, compare, lower_median
from evobench.tasks.fidelity import TASKS, Task, surrogate_task
from evobench.tasks.qlora_data import DATA_FILE

READOUTS = (1 / 8, 1 / 4, 1 / 2, 1.0)
SPLITS = {"dev": range(0, 30), "report": range(1000, 1020)}
CHAT_DATA = Path(__file__).resolve().parents[1] / "experiments" / "data" / "smollm2_stdlib_chat_trials.jsonl"
TASK_NAMES = ("synthetic", "pydoc", "chat")
OURS_DEFAULT = "ga"
PEERS = ("random", "optuna-tpe", "optuna-tpe-hb", "optuna-tpe-median", "dehb", "smac")


@dataclass
class Runs:
    """One task's runs: by method, one ledger's points per seed."""

    task: str
    limit: int  # training tokens of a run
    points: dict[str, list[list[tuple]]] = field(default_factory=dict)
    fitness: str = ""  # what it describes itself as (a surrogate: its model and how many trials it was fitted on)

    def best(self, method: str, share: float) -> np.ndarray:
        return np.array([best_at(p, share * self.limit) for p in self.points[method]])

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
    from evobench.tasks.surrogate_fitness import SurrogateFitness

    data = {"pydoc": DATA_FILE, "chat": CHAT_DATA}[name]
    return surrogate_task(data), lambda: SurrogateFitness.from_file(data, first=trials)


def run_task(
    name: str, methods: list[str], seeds: range, budget: int | None = None, trials: int | None = None, log: Any = print
) -> Runs:
    """Every method on every seed of ``seeds``; ``budget``: whole-budget trials a run (default the task's)."""
    task, build = make_task(name, trials)
    trials = budget or task.trials
    runs = Runs(name, trials * task.budget.tokens)
    fitnesses: dict[str, Any] = {}
    try:
        for method in methods:
            runs.points[method] = []
            spec = fitness_spec(task, method)
            key = repr(sorted(spec.items()))
            if key not in fitnesses:
                fitnesses[key] = build()
                runs.fitness = str(fitnesses[key].describe() or spec)
            for seed in seeds:
                ledger = Ledger(fitnesses[key], runs.limit, seed)
                RUNNERS[method](replace(task, fitness=spec), ledger, seed, trials)
                runs.points[method].append(list(ledger.points))
            log(f"{name:<10} {method:<18} median best {lower_median(runs.best(method, 1.0)):.3f}")
    finally:
        for fitness in fitnesses.values():
            fitness.close()
    return runs


def best_peer(runs: Runs) -> str | None:
    peers = [m for m in runs.points if m in PEERS]
    return min(peers, key=lambda m: lower_median(runs.best(m, 1.0))) if peers else None


def verdicts(runs: Runs, ours: str, peer: str) -> list[int]:
    """+1 / -1 / 0 (win, loss, tie by Mann-Whitney) of ``ours`` against ``peer`` at each read-out."""
    return [compare(runs.best(ours, r), runs.best(peer, r)) for r in READOUTS]


def tables(all_runs: list[Runs], ours: str = OURS_DEFAULT) -> str:
    """Markdown: per task the median best at each read-out, the verdicts of ``ours`` against each
    peer, and the share of the budget each method needs to reach the best peer's final result."""
    out = []
    for runs in all_runs:
        top = best_peer(runs)
        target = lower_median(runs.best(top, 1.0)) if top else math.nan
        seeds = len(next(iter(runs.points.values())))
        out += [
            f"### {runs.task}: {runs.limit:,} training tokens a run, {seeds} seeds",
            f"Fitness: `{runs.fitness}`.",
            "",
            "| method | 1/8 | 1/4 | 1/2 | all | to the best peer's final |"
            + (f" {ours} vs it: 1/8, 1/4, 1/2, all |" if ours in runs.points else ""),
            "|---|---|---|---|---|---|" + ("---|" if ours in runs.points else ""),
        ]
        for method in runs.points:
            medians = " | ".join(f"{lower_median(runs.best(method, r)):.3f}" for r in READOUTS)
            reach = runs.to_reach(method, target) if top else math.inf
            row = f"| {method} | {medians} | {f'{reach:.2f}x' if math.isfinite(reach) else 'not reached'} |"
            if ours in runs.points:
                row += " - |" if method == ours else f" {', '.join(_word(v) for v in verdicts(runs, ours, method))} |"
            out.append(row)
        if top:
            out += ["", f"Best peer by its median final result: {top} ({target:.3f})."]
        out.append("")
    return "\n".join(out)


def summary(all_runs: list[Runs], ours: str = OURS_DEFAULT) -> str:
    """Over tasks: at each read-out, on how many tasks ``ours`` wins / loses against each peer
    (Mann-Whitney), and on how many its median best is the lower one (the goal's measure)."""
    wins = [f"| {ours} against | 1/8 | 1/4 | 1/2 | all |", "|---|---|---|---|---|"]
    lower = [f"| {ours}'s median lower than | 1/8 | 1/4 | 1/2 | all |", "|---|---|---|---|---|"]
    for peer in PEERS:
        present = [r for r in all_runs if peer in r.points and ours in r.points]
        if not present:
            continue
        tested, medians = [], []
        for i, share in enumerate(READOUTS):
            v = [verdicts(r, ours, peer)[i] for r in present]
            tested.append(f"{v.count(1)} won, {v.count(-1)} lost of {len(v)}")
            below = sum(lower_median(r.best(ours, share)) < lower_median(r.best(peer, share)) for r in present)
            medians.append(f"{below} of {len(present)}")
        wins.append(f"| {peer} | " + " | ".join(tested) + " |")
        lower.append(f"| {peer} | " + " | ".join(medians) + " |")
    return "\n".join([*wins, "", *lower])


def _word(v: int) -> str:
    return {1: "won", -1: "lost", 0: "tie"}[v]
