"""The run-budget benchmark's runs: one (task, method, seed) at a time, cached on disk, in parallel.

A run's ledger points are written to ``<cache>/<task>/<method>/<seed>-<key>.json`` as soon
as it ends, so a stopped benchmark keeps every run it finished and a restarted one skips
them. ``key`` hashes everything the run's result depends on: the task, its budget, the
method, the seed and the source of the code that runs it (the tasks' and the method's glue;
the engine's for ours, the installed package's version for a peer), so a changed engine,
task or peer is never answered from the cache, while adding a method keeps the others' runs. Runs go to ``jobs`` worker processes at a lower priority (``nice``).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path(os.environ.get("EVOBENCH_CACHE", Path.home() / ".cache" / "evobench" / "budget"))
# What every run's result depends on besides its method: the tasks, their fitnesses, the ledger.
SOURCES = ("evobench/tasks", "evobench/ledger.py", "fitness/synthetic.py")
PACKAGES = {"optuna": "optuna", "dehb": "dehb", "smac": "smac", "st": "syne-tune", "neps": "neural-pipeline-search"}


@dataclass(frozen=True)
class BenchmarkJob:
    task: str
    method: str
    seed: int
    budget: int | None = None  # whole-budget trials a run; None: the task's
    chat_trials: int | None = None  # chat: its surrogate fitted on the trials of index below this


@dataclass(frozen=True)
class BenchmarkOutcome:
    job: BenchmarkJob
    points: list[list[Any]]  # the ledger's (tokens spent, whole-budget value or None, seconds)
    limit: int  # training tokens of the run
    fitness: str  # what the fitness describes itself as
    seconds: float  # the run's wall time, the first time it was measured
    cached: bool


@cache
def _source_hash(paths: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        files = sorted((ROOT / path).rglob("*.py")) if (ROOT / path).is_dir() else [ROOT / path]
        for file in files:
            digest.update(str(file.relative_to(ROOT)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def _glue(method: str) -> list[Any]:
    """The code that drives ``method``: its runner, and the functions or modules that runner calls
    (not the whole of ``evobench.methods``, so that adding a method leaves the others' runs cached)."""
    from evobench import peers
    from evobench.methods import chunks, fidelity, mf_peers, schedulers, syne_tune_driver

    if method in fidelity.OURS:
        return [fidelity.run_evo, fidelity.evo_config]
    if method == "random":
        return [fidelity.run_random]
    if method.startswith("optuna"):
        return [fidelity.run_optuna, peers]
    if method in ("dehb", "smac"):
        return [mf_peers, chunks.trial_seed]
    shared = [chunks, mf_peers.decode, mf_peers.grid, mf_peers.ordered]
    if method.startswith("neps"):
        return [schedulers.run_neps, schedulers.neps_space, *shared]
    return [schedulers.run_syne_tune, schedulers.syne_tune_space, schedulers._Bridge, syne_tune_driver, *shared]


def code_of(method: str) -> str:
    """What a method's result depends on besides the task and seed: the source of the tasks and of
    its glue (its runner as written, a lever's settings), for ours the engine's, for a peer its
    package's version (Syne Tune 0.13's is the environment it runs in)."""
    from evobench.methods.fidelity import LEVERS, OURS, RUNNERS

    sources = SOURCES + (("evo",) if method in OURS else ())
    glue = [inspect.getsource(RUNNERS[method]), repr(LEVERS.get(method))]
    glue += [inspect.getsource(g) for g in _glue(method)]
    package = next((p for prefix, p in PACKAGES.items() if method.startswith(prefix)), None)
    try:
        installed = version(package) if package else ""
    except PackageNotFoundError:
        installed = "missing"
    if method in ("st-mobster", "st-hypertune", "st-dyhpo"):
        installed = "0.13"  # pinned by the environment it runs in
    text = hashlib.sha256("\n".join(glue).encode()).hexdigest()
    return f"{_source_hash(sources)}:{text}:{package}={installed}"


def key_of(job: BenchmarkJob) -> str:
    text = json.dumps([job.task, job.method, job.seed, job.budget, job.chat_trials, code_of(job.method)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def path_of(cache_dir: Path, job: BenchmarkJob) -> Path:
    return cache_dir / job.task / job.method / f"{job.seed}-{key_of(job)}.json"


@cache
def _task(name: str, trials: int | None) -> tuple[Any, Any]:
    from evobench.budget import make_task

    return make_task(name, trials)


_FITNESSES: dict[tuple, Any] = {}  # per worker process: a fitness is built once and reused by its runs


def run_job(job: BenchmarkJob, cache_dir: Path | None) -> BenchmarkOutcome:
    """The job's ledger points, from the cache when it has them; measured (and cached) otherwise."""
    import time

    from evobench.ledger import Ledger
    from evobench.methods.fidelity import RUNNERS, fitness_spec

    path = path_of(cache_dir, job) if cache_dir else None
    if path is not None and path.exists():
        saved = json.loads(path.read_text())
        return BenchmarkOutcome(job, saved["points"], saved["limit"], saved["fitness"], saved["seconds"], True)
    task, build = _task(job.task, job.chat_trials)
    trials = job.budget or task.trials
    limit = trials * task.budget.tokens
    spec = fitness_spec(task, job.method)
    memo = (job.task, job.chat_trials, repr(sorted(spec.items())))
    if memo not in _FITNESSES:
        _FITNESSES[memo] = build()
    fitness = _FITNESSES[memo]
    ledger = Ledger(fitness, limit, job.seed)
    t0 = time.perf_counter()
    RUNNERS[job.method](replace(task, fitness=spec), ledger, job.seed, trials)
    seconds = time.perf_counter() - t0
    described = str(fitness.describe() or spec)
    points = [list(p) for p in ledger.points]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"job": job.__dict__, "points": points, "limit": limit, "fitness": described, "seconds": seconds}
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(record))
        partial.replace(path)  # whole or not at all: a killed run leaves no half-written result
    return BenchmarkOutcome(job, points, limit, described, seconds, False)


def _lower_priority(nice: int) -> None:
    os.nice(nice)


def run_jobs(
    jobs: Iterable[BenchmarkJob],
    cache_dir: Path | None,
    workers: int = 1,
    nice: int = 0,
    log: Callable[[str], None] = print,
    cached_only: bool = False,
) -> list[BenchmarkOutcome]:
    """Every job's outcome, in the order given; ``workers`` > 1 runs them in that many processes.
    ``cached_only``: only the jobs the cache has (a report of a benchmark still running or stopped)."""
    jobs = list(jobs)
    if cached_only:
        jobs = [job for job in jobs if cache_dir is not None and path_of(cache_dir, job).exists()]
    if workers <= 1:
        if nice:
            _lower_priority(nice)
        outcomes = []
        for job in jobs:
            outcomes.append(run_job(job, cache_dir))
            _log(outcomes[-1], log)
        return outcomes
    done: dict[BenchmarkJob, BenchmarkOutcome] = {}
    with ProcessPoolExecutor(max_workers=workers, initializer=_lower_priority, initargs=(nice,)) as pool:
        futures = {pool.submit(run_job, job, cache_dir): job for job in jobs}
        for future in as_completed(futures):
            outcome = future.result()
            done[outcome.job] = outcome
            _log(outcome, log)
    return [done[job] for job in jobs]


def _log(outcome: BenchmarkOutcome, log: Callable[[str], None]) -> None:
    job = outcome.job
    where = "cached" if outcome.cached else f"{outcome.seconds:.1f} s"
    log(f"{job.task:<16} {job.method:<18} seed {job.seed:<5} {len(outcome.points):>5} trials  {where}")
