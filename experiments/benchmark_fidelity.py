"""Compute efficiency at equal training tokens: plain GA, multi-fidelity GA, early stopping, PBT,
random search and Optuna (TPE, NSGA-II, TPE + Hyperband pruner).

Every method gets the same total training tokens (``--budget`` whole-budget trials'
worth); a run stops at the first trial that would start past it. Only trials trained
on the whole budget count towards "best so far" (a rung's or a pruned trial's value
does not compare), so a method pays for every token it spends on a candidate,
promoted or not.

Methods (ours through ``evo._api.start_run``, peers through Optuna's own API; all of
them drive the same fitness object, so the trial cost is the same for everyone):

- ``ga``: the default GA (steady state, TPE-surrogate screening), population P.
- ``ga-plain``: the same without the surrogate screening (``surrogate: none``).
- ``ga-gen``: the same in ``mode: generational`` (the default before steady state).
- ``ga-mf``: the same with ``multi_fidelity`` (the task's rungs: eta 3, rungs 1/9, 1/3, 1 and
  9 offspring; eta 2, rungs 1/4, 1/2, 1 and 8 offspring on smollm2-surrogate).
- ``ga-es``: the same with ``early_stopping`` (median rule after 25% of the budget).
- ``pbt``: ``mode: pbt``, a population of ``--budget`` members, 4 intervals.
- ``--set KEY=VALUE ...`` puts evolution settings under all of these (each method's own win);
  the table names them, ``ga[replacement=nearest]``, so ``--merge`` can set variants side by side.
- ``random``: random search.
- ``optuna-tpe``, ``optuna-nsga2``: Optuna's samplers with their defaults.
- ``optuna-tpe-hb``: TPE + ``HyperbandPruner(min_resource=1, max_resource=1/first rung,
  reduction_factor=eta)`` (9 and 3; 4 and 2 on smollm2-surrogate); a trial trains in chunks
  to the task's rungs, continuing its checkpoint, and reports after each.

Tasks:

- ``synthetic``: fitness/synthetic.py's learning-curve model (fast-but-worse high learning
  rates make early rankings imperfect), 65,536 training tokens a trial; many seeds.
- ``smollm2``: QLoRA on SmolLM2-135M-Instruct (4-bit, CPU) with the pydoc corpus, 6,144
  training tokens a trial and 1,024 validation tokens; a few seeds (each trial takes ~20 s).
- ``smollm2-surrogate``: experiments/qlora_surrogate.py's model of real SmolLM2 QLoRA trials
  (``--data-file``, collected by collect_qlora_trials.py), with the data's search space, fixed
  values and 4,096-token budget; a trial answers in about a millisecond, so many seeds. Its
  curves have points at 1/4, 1/2, 3/4 and 1 of the budget, hence its rungs.
- ``smollm2-direct``: the real trials that ``smollm2-surrogate`` models (the data file's
  fitness, space, fixed values and budget; no mid-trial evaluations), to confirm its ranking.
  ``--cache FILE`` keeps every result, so a stopped run resumes at the trial it was on.

Prints the median [interquartile range] of the best validation perplexity at 25/50/75/100%
of the budget, the budget fraction each method needs to reach the median final result of
the plain GA and of Optuna TPE, and the wall time per run; writes an anytime plot.

    pip install -e '.[bench]'
    python experiments/benchmark_fidelity.py --task synthetic --plot experiments/results/fidelity_synthetic.png
    python experiments/benchmark_fidelity.py --task smollm2 --seeds 3 --plot experiments/results/fidelity_smollm2.png
    python experiments/benchmark_fidelity.py --task smollm2-surrogate --seeds 20 --budget 60 \
        --plot experiments/results/surrogate_smollm2.png [--surrogate-noise]
    OMP_NUM_THREADS=1 python experiments/benchmark_fidelity.py --task smollm2-direct --budget 20 \
        --methods ga optuna-tpe random --seeds 5 --cache direct.jsonl --save direct.json
    python experiments/benchmark_fidelity.py --quick   # synthetic, 3 seeds, ~5 s
    python experiments/benchmark_fidelity.py --merge a.json b.json   # one report over runs saved with --save
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from peers import sampler, suggest
from qlora_surrogate import DATA_FILE, load_data, require_data_file
from surrogate_fitness import SurrogateFitness
from trial_cache import CachedFitness, open_cache

from evo._api import start_run
from evo._space import SearchSpace
from evo.config import parse_config
from evo.trial import Budget, ConfigError, FitnessBase, Trial, TrialResult
from fitness import make_fitness

METHODS = (
    "ga",
    "ga-plain",
    "ga-gen",
    "ga-mf",
    "ga-es",
    "pbt",
    "random",
    "optuna-tpe",
    "optuna-nsga2",
    "optuna-tpe-hb",
)
SURROGATE = "smollm2-surrogate"
DIRECT = "smollm2-direct"
CHECKPOINTS = (0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Task:
    fitness: dict[str, Any]
    budget: Budget
    space: dict[str, Any]
    fixed: dict[str, Any]
    population: int  # of the GAs
    es_fitness: dict[str, Any] = field(default_factory=dict)  # what early stopping needs on top (evaluations)
    # ga-mf and optuna-tpe-hb: the same rungs, each eta times the one before
    rungs: tuple[float, ...] = (1 / 9, 1 / 3, 1.0)
    eta: int = 3
    mf_offspring: int = 9  # ga-mf's children per generation
    evolution: dict[str, Any] = field(default_factory=dict)  # --set: under every method of ours

    @property
    def hyperband_resources(self) -> int:
        """Optuna's max_resource: rungs in units of the first one (min_resource=1)."""
        return round(1 / self.rungs[0])


SYNTHETIC_SPACE = {
    "learning_rate": {"type": "log_float", "low": 1e-5, "high": 1e-2},
    "per_device_train_batch_size": {"type": "int", "choices": [1, 2, 4, 8, 16]},
    "r": {"type": "int", "choices": [4, 8, 16, 32, 64]},
    "lora_alpha": {"type": "int", "low": 8, "high": 128, "step": 8},
    "lora_dropout": {"type": "float", "low": 0.0, "high": 0.3, "step": 0.05},
    "target_modules": {"type": "categorical", "choices": ["attention", "mlp", "all-linear"]},
    "lr_scheduler_type": {"type": "categorical", "choices": ["constant", "linear", "cosine"]},
    "warmup_ratio": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.01},
    "max_grad_norm": {"type": "categorical", "choices": [0.3, 1.0, 10.0], "ordered": True},
}
SMOLLM2_SPACE = {
    "learning_rate": {"type": "log_float", "low": 1e-4, "high": 1e-2},
    "r": {"type": "int", "choices": [8, 16, 32, 64]},
    "lora_alpha": {"type": "int", "choices": [8, 16, 32, 64, 128]},
    "lora_dropout": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.05},
    "target_modules": {"type": "categorical", "choices": ["attention", "all-linear"]},
    "lr_scheduler_type": {"type": "categorical", "choices": ["constant", "linear", "cosine"]},
    "warmup_ratio": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.05},
    "per_device_train_batch_size": {"type": "int", "choices": [4, 8]},
}
TASKS = {
    "synthetic": Task(
        fitness={"type": "synthetic", "noise": 0.02, "eval_every": 0.125},
        budget=Budget(tokens=65536),
        space=SYNTHETIC_SPACE,
        fixed={"max_seq_length": 128, "optim": "adamw_torch"},
        population=8,
    ),
    "smollm2": Task(
        fitness={
            "type": "qlora",
            "model": "smollm2-135m",
            "data": "pydoc",
            "validation_tokens": 1024,
            "eval_seq_length": 256,
            "trial_timeout": 300,
        },
        budget=Budget(tokens=6144),
        space=SMOLLM2_SPACE,
        fixed={
            "max_seq_length": 128,
            "optim": "adamw_torch",
            "gradient_accumulation_steps": 1,
            "max_grad_norm": 1.0,
            "weight_decay": 0.0,
            "bnb_4bit_compute_dtype": "auto",
        },
        population=4,
        es_fitness={"eval_every": 3},
    ),
}


def surrogate_task(data_file: Path | str) -> Task:
    """The data's own search space, fixed values and budget; rungs where its curves have points."""
    header = load_data(data_file).header
    return Task(
        fitness={"type": "qlora-surrogate"},  # built by main from the data file, not by make_fitness
        budget=Budget(tokens=header["budget"]["tokens"]),
        space=header["search_space"],
        fixed=header["fixed"],
        population=8,
        rungs=(1 / 4, 1 / 2, 1.0),
        eta=2,
        mf_offspring=8,
    )


def direct_task(data_file: Path | str) -> Task:
    """The surrogate's real trials: the data's own fitness, without its mid-trial evaluations."""
    header = load_data(data_file).header
    return replace(surrogate_task(data_file), fitness={**header["fitness"], "eval_every": 0})


# -- equal compute ----------------------------------------------------------------------------
class BudgetSpent(BaseException):
    """Raised past the token budget; a BaseException so that no trial-level handler swallows it."""


class Ledger(FitnessBase):
    """Wraps the fitness: counts training tokens, records whole-budget results, stops at the limit."""

    def __init__(self, fitness: Any, limit_tokens: int, seed: int | None = None) -> None:
        self.fitness, self.limit, self.seed = fitness, limit_tokens, seed  # seed: for the seed-by-seed table
        self.objectives = fitness.objectives
        self.structural_genes, self.genes = fitness.structural_genes, fitness.genes
        self.intermediate_values = fitness.intermediate_values
        self.spent, self.points, self.t0 = 0, [], time.perf_counter()

    def fingerprint(self) -> str:
        return self.fitness.fingerprint()

    def describe(self) -> dict[str, Any]:
        return self.fitness.describe()

    def close(self) -> None:  # the fitness outlives the run: the next run reuses its worker
        pass

    def evaluate(self, trial: Trial) -> TrialResult:
        if self.spent >= self.limit:
            raise BudgetSpent
        result = self.fitness.evaluate(trial)
        self.spent += int(result.metrics.get("train_tokens", 0))
        self.t0 -= result.metrics.get("replayed_seconds", 0.0)  # a trial answered from --cache: its first time
        value = result.values.get(self.objectives[0].name) if result.ok and trial.fidelity >= 1 else None
        self.points.append((self.spent, value, time.perf_counter() - self.t0))
        return result


# -- the methods ---------------------------------------------------------------------------------
def evo_config(task: Task, seed: int, **evolution: Any) -> Any:
    """The run config of one of our methods; a bad ``--set`` fails here, before anything trains."""
    raw = {
        "seed": seed,
        "fitness": dict(task.fitness),
        "budget": {k: v for k, v in task.budget.as_dict().items() if v is not None},
        "search_space": task.space,
        "fixed": task.fixed,
        "artifacts": "none",
        "evolution": {"population_size": task.population, "generations": 10_000, **task.evolution, **evolution},
    }
    return parse_config(raw)


def run_evo(task: Task, ledger: Ledger, seed: int, budget_trials: int, **evolution: Any) -> None:
    try:
        start_run(evo_config(task, seed, **evolution), ledger, None)
    except BudgetSpent:
        pass


def run_random(task: Task, ledger: Ledger, seed: int, budget_trials: int) -> None:
    space, rng = SearchSpace.from_spec(task.space), np.random.default_rng(seed)
    try:
        for i in range(10**6):
            ledger.evaluate(Trial(i, {**task.fixed, **space.sample(rng)}, task.budget, _seed(seed, i)))
    except BudgetSpent:
        pass


def run_optuna(task: Task, ledger: Ledger, seed: int, budget_trials: int, name: str, hyperband: bool = False) -> None:
    import optuna

    space = SearchSpace.from_spec(task.space)
    resources = task.hyperband_resources
    pruner = (
        optuna.pruners.HyperbandPruner(min_resource=1, max_resource=resources, reduction_factor=task.eta)
        if hyperband
        else None
    )
    # Hyperband puts a trial in a bracket by a hash of the study's name: a fixed name makes a seed's run repeatable
    study = optuna.create_study(
        study_name=f"benchmark-{seed}", sampler=sampler(name, seed), pruner=pruner, direction="minimize"
    )
    scratch = tempfile.TemporaryDirectory(prefix="bench-hb-")

    def objective(trial: Any) -> float:
        config = {**task.fixed, **suggest(trial, space)}
        seed_i = _seed(seed, trial.number)
        if not hyperband:
            result = ledger.evaluate(Trial(trial.number, config, task.budget, seed_i))
            return result.values["val_perplexity"] if result.ok else float("nan")
        previous = None
        for rung, fidelity in enumerate(task.rungs):
            here = Path(scratch.name) / f"{trial.number}-{rung}"
            result = ledger.evaluate(
                Trial(
                    trial.number,
                    config,
                    task.budget,
                    seed_i,
                    fidelity=fidelity,
                    resume_from=previous,
                    checkpoint_dir=here if fidelity < 1 else None,
                )
            )
            if not result.ok:
                return float("nan")
            trial.report(result.values["val_perplexity"], step=round(fidelity * resources))
            if fidelity < 1 and trial.should_prune():
                raise optuna.TrialPruned()
            previous = here
        return result.values["val_perplexity"]

    try:
        study.optimize(objective, n_trials=10**6)
    except BudgetSpent:
        pass
    finally:
        scratch.cleanup()


RUNNERS: dict[str, Callable[[Task, Ledger, int, int], None]] = {
    "ga": lambda t, ledger, s, b: run_evo(t, ledger, s, b),
    "ga-plain": lambda t, ledger, s, b: run_evo(t, ledger, s, b, surrogate="none"),
    "ga-gen": lambda t, ledger, s, b: run_evo(t, ledger, s, b, mode="generational"),
    "ga-mf": lambda t, ledger, s, b: run_evo(
        t, ledger, s, b, offspring_size=t.mf_offspring, multi_fidelity={"eta": t.eta, "min_fidelity": t.rungs[0]}
    ),
    "ga-es": lambda t, ledger, s, b: run_evo(t, ledger, s, b, early_stopping={"warmup": 0.25}),
    "pbt": lambda t, ledger, s, b: run_evo(t, ledger, s, b, population_size=b, mode="pbt", pbt={"interval": 0.25}),
    "random": run_random,
    "optuna-tpe": lambda t, ledger, s, b: run_optuna(t, ledger, s, b, "tpe"),
    "optuna-nsga2": lambda t, ledger, s, b: run_optuna(t, ledger, s, b, "nsga2"),
    "optuna-tpe-hb": lambda t, ledger, s, b: run_optuna(t, ledger, s, b, "tpe", hyperband=True),
}


OURS = {m for m in METHODS if m.startswith("ga") or m == "pbt"}


def setting(text: str) -> tuple[str, Any]:
    """``--set KEY=VALUE``: the value read as YAML (numbers, true/false, lists)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, yaml.safe_load(value)


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _seed(seed: int, i: int) -> int:
    return int(np.random.SeedSequence(seed, spawn_key=(i,)).generate_state(1)[0])


# -- the report -------------------------------------------------------------------------------------
def best_at(points: list[tuple[int, float | None, float]], tokens: float) -> float:
    """Best whole-budget value among the trials finished within ``tokens``; inf if none."""
    values = [v for spent, v, _ in points if spent <= tokens * (1 + 1e-9) and v is not None]
    return min(values) if values else math.inf


def to_reach(points: list[tuple[int, float | None, float]], target: float) -> float:
    """Tokens spent when the best first reached ``target``; inf if never."""
    best = math.inf
    for spent, value, _ in points:
        if value is not None:
            best = min(best, value)
        if best <= target:
            return float(spent)
    return math.inf


def report(runs: dict[str, list[Ledger]], limit: int, unit: int, task_name: str) -> None:
    methods = list(runs)
    seeds = len(next(iter(runs.values())))
    print(
        f"\nbest validation perplexity (median [25%, 75%] over {seeds} seeds) at a share of the budget "
        f"of {limit // unit} whole trials = {limit:,} training tokens; task {task_name}"
    )
    width = max(15, *(len(m) + 1 for m in methods))
    header = f"  {'method':<{width}}" + "".join(f"{f'{c:.0%}':>22}" for c in CHECKPOINTS)
    finals = {m: [best_at(ledger.points, limit) for ledger in runs[m]] for m in methods}
    targets = {
        ref: float(np.percentile(finals[ref], 50, method="lower")) for ref in ("ga", "optuna-tpe") if ref in runs
    }
    header += "".join(f"{'to ' + ref + ' final':>20}" for ref in targets) + f"{'wall s/run':>12}"
    print(header)
    for m in methods:
        cells = []
        for c in CHECKPOINTS:
            values = [best_at(ledger.points, c * limit) for ledger in runs[m]]
            q1, med, q3 = np.percentile(values, [25, 50, 75], method="lower")  # "lower": no arithmetic on inf
            cells.append(f"{_num(med):>8} [{_num(q1)},{_num(q3)}]")
        reach = []
        for target in targets.values():
            spent = float(np.percentile([to_reach(ledger.points, target) for ledger in runs[m]], 50, method="lower"))
            reach.append(f"{spent / limit:.2f}x" if math.isfinite(spent) else "not reached")
        wall = float(np.median([ledger.points[-1][2] if ledger.points else 0.0 for ledger in runs[m]]))
        print(
            f"  {m:<{width}}"
            + "".join(f"{c:>22}" for c in cells)
            + "".join(f"{r:>20}" for r in reach)
            + f"{wall:>12.1f}"
        )
    print(
        "\n'to X final': the median share of the budget (training tokens) a method needs to reach the median\n"
        "final result of X ('not reached' within the budget); 1.00x = the whole budget."
    )
    if seeds <= 10 and all(ledger.seed is not None for v in runs.values() for ledger in v):
        per_seed(runs, limit, width)


def per_seed(runs: dict[str, list[Ledger]], limit: int, width: int) -> None:
    """A few seeds (real trials): every run's final best, seed by seed, so no median hides one."""
    seeds = sorted({ledger.seed for v in runs.values() for ledger in v})
    print("\nfinal best validation perplexity, seed by seed (- : that run is missing)")
    print(f"  {'method':<{width}}" + "".join(f"{s:>10}" for s in seeds))
    for m, ledgers in runs.items():
        by_seed = {ledger.seed: best_at(ledger.points, limit) for ledger in ledgers}
        print(f"  {m:<{width}}" + "".join(f"{_num(by_seed.get(s, math.inf)):>10}" for s in seeds))


def _num(x: float) -> str:
    return f"{x:.3f}" if math.isfinite(x) else "-"


def plot(runs: dict[str, list[Ledger]], limit: int, unit: int, title: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=[*TASKS, SURROGATE, DIRECT], default="synthetic")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        type=setting,
        help="evolution settings under every method of ours (a method's own win), named in the table: ga[KEY=VALUE]",
    )
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument(
        "--seed-stride", type=positive, default=1, help="seeds first, first+stride, ... (split seeds between processes)"
    )
    parser.add_argument(
        "--budget",
        type=int,
        default=None,
        help="training tokens per run, in whole-budget trials (synthetic 40, smollm2 8, smollm2-surrogate 60)",
    )
    parser.add_argument(
        "--data-file", type=Path, default=DATA_FILE, help=f"the trials of {SURROGATE} (and the task of {DIRECT})"
    )
    parser.add_argument(
        "--cache", type=Path, help="keep every trial's result in this JSONL file and answer repeated trials from it"
    )
    parser.add_argument(
        "--replay-only", action="store_true", help="with --cache: stop (exit 1) at a trial the cache does not hold"
    )
    parser.add_argument("--trials", type=int, help=f"{SURROGATE}: only the trials of index below this")
    parser.add_argument(
        "--surrogate-noise",
        action="store_true",
        help=f"{SURROGATE}: add noise with the sigma of the model's held-out residuals, seeded by the trial",
    )
    parser.add_argument("--quick", action="store_true", help="synthetic, 3 seeds, budget 16")
    parser.add_argument("--plot", help="write the anytime plot (PNG) here")
    parser.add_argument("--save", help="write every run's ledger (tokens, value, seconds per trial) as JSON here")
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="report runs saved with --save (same task and budget) instead of running anything",
    )
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.plot)
    if args.quick:
        args.task, args.seeds, args.budget = "synthetic", 3, 16
    if args.replay_only and not args.cache:
        parser.error("--replay-only needs --cache")
    try:
        cached = open_cache(args.cache) if args.cache else {}
    except ValueError as e:
        parser.error(f"--cache: {e}")
    if args.task in (SURROGATE, DIRECT):
        require_data_file(args.data_file)
    tasks = {SURROGATE: surrogate_task, DIRECT: direct_task}
    task = tasks[args.task](args.data_file) if args.task in tasks else TASKS[args.task]
    budget_trials = args.budget or {"synthetic": 40, SURROGATE: 60, DIRECT: 20}.get(args.task, 8)
    unit = task.budget.tokens
    limit = budget_trials * unit
    fitnesses: dict[str, Any] = {}  # one per fitness definition, shared by the runs (a QLoRA worker stays up)
    task = replace(task, evolution=dict(args.set))
    try:
        evo_config(task, args.first_seed)
    except ConfigError as e:
        print(f"--set: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    named = ",".join(f"{k}={v}" for k, v in args.set)
    label = {m: f"{m}[{named}]" if named and m in OURS else m for m in args.methods}
    runs: dict[str, list[Ledger]] = {label[m]: [] for m in args.methods}
    t0 = time.perf_counter()
    try:
        for seed in range(args.first_seed, args.first_seed + args.seeds * args.seed_stride, args.seed_stride):
            for m in args.methods:
                spec = {**task.fitness, **(task.es_fitness if m == "ga-es" else {})}
                key = repr(sorted(spec.items()))
                if key not in fitnesses and args.task == SURROGATE:
                    fitnesses[key] = SurrogateFitness.from_file(
                        args.data_file, noise=args.surrogate_noise, first=args.trials
                    )
                    print(f"surrogate: {fitnesses[key].describe()}, fitted in {time.perf_counter() - t0:.1f} s")
                elif key not in fitnesses:
                    fitnesses[key] = make_fitness(spec)
                    if args.cache:
                        fitnesses[key] = CachedFitness(fitnesses[key], args.cache, args.replay_only, cached)
                ledger = Ledger(fitnesses[key], limit, seed)
                task_for_run = replace(task, fitness=spec)
                RUNNERS[m](task_for_run, ledger, seed, budget_trials)
                runs[label[m]].append(ledger)
                if args.save:  # after every run, so a long benchmark stopped early keeps what it measured
                    saved = {
                        "task": args.task,
                        "limit": limit,
                        "unit": unit,
                        "runs": {k: [led.points for led in v] for k, v in runs.items() if v},
                        "seeds": {k: [led.seed for led in v] for k, v in runs.items() if v},
                    }
                    Path(args.save).write_text(json.dumps(saved))
                print(
                    f"seed {seed} {m:<14} best {_num(best_at(ledger.points, limit))}  "
                    f"{ledger.points[-1][2] if ledger.points else 0:.0f} s",
                    flush=True,
                )
    finally:
        for fitness in fitnesses.values():
            fitness.close()
    print(f"\n{args.task}: {len(args.methods)} methods x {args.seeds} seeds, {time.perf_counter() - t0:.0f} s wall")
    report(runs, limit, unit, args.task)
    if args.plot:
        plot(runs, limit, unit, f"{args.task}: median best so far, 25-75% band, {args.seeds} seeds", args.plot)
        print(f"\nplot: {args.plot}")


class _Saved:
    """A ledger read back from --save output: the report only needs its points."""

    def __init__(self, points: list, seed: int | None) -> None:
        self.points, self.seed = [tuple(p) for p in points], seed


def merge(paths: list[str], plot_path: str | None) -> None:
    """One report over runs saved by several invocations (e.g. methods run in separate sessions)."""
    runs: dict[str, list[_Saved]] = {}
    first = None
    for path in paths:
        saved = json.loads(Path(path).read_text())
        shape = (saved["task"], saved["limit"], saved["unit"])
        if first is not None and shape != first:
            raise SystemExit(f"{path}: task/budget {shape} differs from {first}; cannot merge")
        first = shape
        for method, ledgers in saved["runs"].items():
            seeds = saved.get("seeds", {}).get(method, [None] * len(ledgers))  # older files: no seeds
            runs.setdefault(method, []).extend(_Saved(points, seed) for points, seed in zip(ledgers, seeds))
    task, limit, unit = first
    report(runs, limit, unit, task)
    if plot_path:
        seeds = len(next(iter(runs.values())))
        plot(runs, limit, unit, f"{task}: median best so far, 25-75% band, {seeds} seeds", plot_path)
        print(f"\nplot: {plot_path}")


if __name__ == "__main__":
    main()
