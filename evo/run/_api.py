"""The Python API: start, resume, or simply evolve. The CLI is built on these."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from evo._errors import renamed_keywords
from evo.config import EvolutionSettings, ExecutorType, RunConfig, parse_config
from evo.evaluation import RunAborted, RunObserver, RunResult, run_fingerprint
from evo.executors import Executor, check_reachable, make_executor
from evo.optuna import check_report_to, mirror_for
from evo.run._files import check_config_file, restore_config_file, stopped_by_full_disk
from evo.run._preflight import check_before_run
from evo.search import genomes_from_run
from evo.space import SearchSpace, canonical
from evo.storage import RunStore
from evo.strategies import run_strategy
from evo.trial import Budget, ConfigError, Fitness

__all__ = ["evolve", "start_run", "resume_run", "RunAborted"]


@renamed_keywords(seed_genomes="warm_start")  # 0.1's name: "seed" is the random seed only since 0.2
def evolve(
    space: SearchSpace | Mapping[str, Any],
    fitness: Fitness,
    *,
    budget: Budget,
    evolution: EvolutionSettings | Mapping[str, Any] | None = None,
    seed: int = 0,
    fixed: Mapping[str, Any] | None = None,
    baseline: Mapping[str, Any] | None = None,
    run_dir: Path | str | None = None,
    run_budget: Mapping[str, Any] | None = None,
    warm_start: Sequence[Mapping[str, Any]] = (),
    observers: Sequence[RunObserver] = (),
    executor: Executor | Mapping[str, Any] | None = None,
) -> RunResult:
    """Evolve ``fitness`` over ``space`` and return the best configs and the history.

    ``space`` is a :class:`SearchSpace` or a ``search_space`` mapping as in a run
    config; ``budget`` (steps or tokens) is what every trial may train. With ``run_dir``
    the run is stored there and can be resumed; without it everything stays in memory.
    ``executor`` is an :class:`~evo.executors.Executor` or an ``executor`` mapping as
    in a run config (e.g. ``{"type": "ray"}``). ``run_budget`` ends the run at a number of
    trials, training tokens or hours (``{"train_tokens": 4_000_000}``; without
    ``generations`` in ``evolution`` it runs until then). ``warm_start``: genomes the first
    population starts with.
    """
    if isinstance(evolution, EvolutionSettings):
        evolution = {
            f.name: getattr(getattr(evolution, f.name), "value", getattr(evolution, f.name))
            for f in dataclasses.fields(evolution)
        }
    raw: dict[str, Any] = {
        "seed": seed,
        "fitness": {"type": type(fitness).__name__},
        "budget": {k: v for k, v in budget.as_dict().items() if v is not None},
        "evolution": dict(evolution or {}),
        "fixed": dict(fixed or {}),
        "artifacts": "best" if run_dir else "none",
    }
    if baseline:
        raw["baseline"] = dict(baseline)
    if run_budget:
        raw["run_budget"] = dict(run_budget)
    if isinstance(executor, Mapping):
        raw["executor"], executor = dict(executor), None
    spec = space.to_spec() if isinstance(space, SearchSpace) else dict(space)
    config = parse_config({**raw, "search_space": spec})
    return start_run(config, fitness, run_dir, warm_start=warm_start, observers=observers, executor=executor)


@renamed_keywords(
    seed_genomes="warm_start",
    seed_from="warm_start_from",
    seed_generation="warm_start_generation",
    seed_top_k="warm_start_top_k",
)
def start_run(
    config: RunConfig,
    fitness: Fitness,
    run_dir: Path | str | None,
    *,
    warm_start: Sequence[Mapping[str, Any]] = (),
    warm_start_from: Path | str | None = None,
    warm_start_generation: int | None = None,
    warm_start_top_k: int | None = None,
    observers: Sequence[RunObserver] = (),
    warn: Callable[[str], None] = lambda message: None,
    executor: Executor | None = None,
) -> RunResult:
    """Start a new run of ``config`` in ``run_dir`` (None: in memory).

    The first population starts with the ``warm_start`` genomes, then the population of
    generation ``warm_start_generation`` (default: the last) of the run in
    ``warm_start_from``, its ``warm_start_top_k`` best. Trials run on ``executor``;
    without one, on the executor ``config.executor`` describes, built here and closed
    at the end.
    """
    for message in check_before_run(config, fitness):
        warn(message)
    fingerprint = run_fingerprint(fitness, config.budget)
    genomes = [dict(g) for g in warm_start]
    source = None
    if warm_start_from is not None:
        found, warnings, source = genomes_from_run(
            warm_start_from, config.space, generation=warm_start_generation, top_k=warm_start_top_k, seed=config.seed
        )
        for message in warnings:
            warn(message)
        genomes.extend(found)
    for genome in genomes:
        if not config.space.contains(genome):
            raise ConfigError(f"warm-start genome {genome!r} does not fit the search space")

    with stopped_by_full_disk(None):
        store = RunStore.create(
            run_dir,
            config=config.raw,
            fingerprint=fingerprint,
            objectives=fitness.objectives,
            environment=describe_environment(fitness),
            warm_start=genomes,
            warm_started_from=str(Path(warm_start_from).resolve()) if warm_start_from is not None else None,
        )
    try:
        with stopped_by_full_disk(store):
            if source is not None:
                _import_results(source, store, config, genomes, fingerprint, warn)
                source.close()
            return _evolve(config, fitness, store, fingerprint, executor, warm_start=genomes, observers=observers)
    finally:
        store.close()


def resume_run(
    run_dir: Path | str,
    fitness: Fitness,
    *,
    run_budget: Mapping[str, Any] | None = None,
    observers: Sequence[RunObserver] = (),
    executor: Executor | None = None,
) -> RunResult:
    """Continue a stored run where it stopped; finished evaluations are not redone.

    Refuses when ``fitness`` is not the definition the run started with (model, data or
    budget changed): its results would not be comparable with the stored ones. Trials
    run on ``executor``, or on the one the stored config describes. ``run_budget``
    changes the run's limits from here on (the keys given replace the stored ones; the
    run continues while the new limits allow), and is stored with the run.
    """
    store = RunStore.open(run_dir)
    try:
        store.lock()
        store.verify()
        config = load_stored_config(store)
        check_config_file(store)
        check_report_to(config.report_to)
        fingerprint = run_fingerprint(fitness, config.budget)
        if fingerprint != store.meta("fingerprint"):
            raise ConfigError(
                f"{run_dir}: the fitness definition (model, data or budget) differs from the one the run started with"
            )
        with stopped_by_full_disk(store):
            if run_budget is not None:
                config = with_run_budget(config, run_budget)
                store.set_config(config.raw)
            else:
                restore_config_file(store, config.raw)
            genomes = store.meta("warm_start_genomes", [])
            return _evolve(config, fitness, store, fingerprint, executor, warm_start=genomes, observers=observers)
    finally:
        store.close()


def _evolve(
    config: RunConfig,
    fitness: Fitness,
    store: RunStore,
    fingerprint: str,
    executor: Executor | None,
    **options: Any,
) -> RunResult:
    """Run the evolution the config's mode asks for, on ``executor`` or on one built for this run."""
    mirror = mirror_for(config.report_to, store)
    if mirror is not None:
        options["observers"] = [*options.get("observers", ()), mirror]
    runs_on = executor if executor is not None else make_executor(config.executor, fitness)
    try:
        return run_strategy(config, fitness, store, fingerprint, executor=runs_on, **options)
    except BaseException:  # Ctrl-C, SIGTERM, a run stopped by failures: what was in flight is abandoned
        with contextlib.suppress(Exception):  # best effort: a resume marks them too, if this write fails
            store.interrupt_running()
        raise
    finally:
        if executor is None:  # built here, so closed here
            runs_on.close()


@contextlib.contextmanager
def fitness_and_executor(
    config: RunConfig, make_fitness: Callable[[Mapping[str, Any]], Fitness]
) -> Iterator[tuple[Fitness, Executor]]:
    """The run's fitness (``make_fitness(config.fitness)``) and executor, both closed however the
    run ends. Ray actors get the factory, not the driver's fitness: each builds its own, once."""
    if config.executor.type is ExecutorType.RAY:  # seconds, before the fitness takes its own
        check_reachable(config.executor.address)
    fitness = make_fitness(config.fitness)
    executor = None
    try:
        executor = make_executor(
            config.executor, fitness, factory=functools.partial(make_fitness, dict(config.fitness))
        )
        yield fitness, executor
    finally:
        if executor is not None:
            executor.close()
        fitness.close()


def describe_environment(fitness: Fitness) -> dict[str, Any]:
    """Versions and hardware, for the report; the fitness adds its own (device, torch, ...)."""
    import platform
    from importlib import metadata

    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("evo-qlora", "deap", "numpy"):
        try:
            env[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    env.update(fitness.describe())
    return env


def with_run_budget(config: RunConfig, run_budget: Mapping[str, Any]) -> RunConfig:
    """``config`` with ``run_budget``'s keys replacing its run budget's, validated as a new config."""
    raw = dict(config.raw)
    merged = {**(raw.get("run_budget") or {}), **dict(run_budget)}
    return parse_config({**raw, "run_budget": {k: v for k, v in merged.items() if v is not None}})


def load_stored_config(store: RunStore) -> RunConfig:
    raw = store.meta("config")
    if raw is None:
        raise ConfigError(f"{store.run_dir}: run.db holds no config")
    return parse_config(raw)


def _import_results(
    source: RunStore,
    store: RunStore,
    config: RunConfig,
    genomes: Sequence[Mapping[str, Any]],
    fingerprint: str,
    warn: Callable[[str], None],
) -> None:
    """Copy the warm-start genomes' finished trials, but only under the same fitness definition."""
    if source.meta("fingerprint") != fingerprint:
        warn(
            "the warm-start run used another fitness definition (model, data or budget): its genomes are evaluated anew"
        )
        return
    for genome in genomes:
        key = canonical(config.trial_config(genome))
        record = source.find_reusable(fingerprint, key)
        if record is not None and store.find_reusable(fingerprint, key) is None:
            store.copy_trial(
                record, fingerprint=fingerprint, config_key=key, note=f"reused from {source.run_dir} trial {record.id}"
            )
