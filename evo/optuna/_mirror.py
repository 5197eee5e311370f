"""A live mirror of a run in Optuna's format, for optuna-dashboard and Optuna's own tools.

Each finished trial of ``run.db`` is written into ``RUN_DIR/optuna.journal`` (Optuna's
``JournalStorage`` on a file) as one Optuna trial: its genes as params with distributions
that match each gene, its values, its validation curve as intermediate values, its state,
and where it came from as user attributes. ``run.db`` stays the source of truth: the mirror
is derived from it and brought up to date from it (on resume, or when the journal is
missing or behind), keyed by ``evo_trial_id`` so no trial is written twice.

States: a whole-budget complete trial is COMPLETE; a trial trained to part of the budget (a
rung, a PBT segment) is PRUNED, as Optuna's Hyperband records the trials it stops, so that
Optuna's best trial is evo's; an early-stopped one PRUNED, a failed one FAIL, each with the
reason as the ``reason`` user attribute. Optuna is imported only here, lazily: the engine
runs without it.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from evo.evaluation import RunInfo, RunObserver, stored_objectives
from evo.space import Gene, GeneKind, SearchSpace, canonical
from evo.storage import IMPORTED_GENERATION, IndividualRecord, RunStore, TrialRecord
from evo.trial import ConfigError, Objective, TrialStatus

JOURNAL = "optuna.journal"
EXTRA = "pip install 'evo-qlora[dashboard]'"  # optuna, optuna-dashboard and scikit-learn
TRIAL_ID = "evo_trial_id"  # the user attribute that ties an Optuna trial to its row in run.db
_COARSE = {  # evo.search._breeding's origins, as the mirror names them
    "crossover": "bred",
    "mutation": "bred",
    "crossover+mutation": "bred",
    "init": "initial",
    "prior": "initial",
}


def optuna_version() -> str | None:
    """The installed Optuna's version, or None without it."""
    if importlib.util.find_spec("optuna") is None:
        return None
    try:
        return importlib.metadata.version("optuna")
    except importlib.metadata.PackageNotFoundError:
        return None


def optuna_installed() -> bool:
    """Optuna 4 or later: the journal's file backend (``JournalFileBackend``) came with 4.0."""
    version = optuna_version()
    return version is not None and int(version.split(".")[0]) >= 4


def journal_path(run_dir: Path | str) -> Path:
    return Path(run_dir) / JOURNAL


# -- genes as Optuna params ------------------------------------------------------------------
def distribution(gene: Gene) -> Any:
    """The Optuna distribution that holds exactly the values ``gene`` takes."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if gene.kind is GeneKind.BOOL:
        return CategoricalDistribution([False, True])
    if gene.choices is not None:
        return CategoricalDistribution([encode_choice(c) for c in gene.choices])
    low, high = float(gene.low or 0), float(gene.high or 0)
    if gene.kind is GeneKind.INT:
        step = 1 if gene.log or not gene.step else int(gene.step)
        return IntDistribution(int(low), int(low) + (int(high) - int(low)) // step * step, log=gene.log, step=step)
    return FloatDistribution(low, high, log=gene.log, step=gene.step if gene.step and not gene.log else None)


def encode_choice(choice: Any) -> Any:
    """A choice as an Optuna categorical value: scalars as they are, a list (``[q_proj, v_proj]``)
    as its canonical JSON text, which :func:`decode_params` turns back into the list."""
    return choice if choice is None or isinstance(choice, (bool, int, float, str)) else canonical(choice)


def encode_params(space: SearchSpace, config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params, distributions) of a trial config's genes; a value its gene's distribution does not
    hold (a trial imported from a run with another space) is left out of both."""
    params, dists = {}, {}
    for gene in space:
        if gene.name not in config:
            continue
        dist = distribution(gene)
        value = encode_choice(config[gene.name]) if gene.choices is not None else config[gene.name]
        try:
            held = dist._contains(dist.to_internal_repr(value))
        except (ValueError, TypeError):
            held = False
        if held:
            params[gene.name], dists[gene.name] = value, dist
    return params, dists


def decode_params(space: SearchSpace, params: Mapping[str, Any]) -> dict[str, Any]:
    """The genome an Optuna trial's params encode (list-valued choices as lists again)."""
    genome = {}
    for name, value in params.items():
        gene = space.genes[name]
        if gene.choices is not None:
            value = next((c for c in gene.choices if encode_choice(c) == value), value)
            value = list(value) if isinstance(value, (list, tuple)) else value
        genome[name] = value
    return genome


# -- a stored trial as an Optuna trial ---------------------------------------------------------
def frozen_trial(
    record: TrialRecord,
    space: SearchSpace,
    objectives: Sequence[Objective],
    individual: IndividualRecord | None = None,
    parents: Sequence[int] = (),
) -> Any:
    """``record`` as an ``optuna.trial.FrozenTrial`` (to add to a study); ``parents``: their trial ids."""
    from optuna.trial import FrozenTrial, TrialState

    params, dists = encode_params(space, record.config)
    attrs: dict[str, Any] = {TRIAL_ID: record.id, "generation": record.generation, "fidelity": record.fidelity}
    origin = individual.origin if individual is not None else None
    if record.generation == IMPORTED_GENERATION:
        origin = "warm_start"
    if origin is not None:
        attrs["origin"] = _COARSE.get(origin, origin)
        if attrs["origin"] == "bred":
            attrs["operator"] = origin
    if parents:
        attrs["parents"] = list(parents)
    if record.resumed_from is not None:
        attrs["continued_checkpoint_of"] = record.resumed_from
    if record.duration is not None:
        attrs["duration_s"] = round(float(record.duration), 3)
    values = None
    if record.status is TrialStatus.COMPLETE and record.full:
        state, values = TrialState.COMPLETE, [float(record.values[o.name]) for o in objectives]
    elif record.status is TrialStatus.COMPLETE:
        state = TrialState.PRUNED
        attrs["reason"] = f"partial budget: trained to fidelity {record.fidelity:g} (a rung or a PBT segment)"
    elif record.status is TrialStatus.PRUNED:
        state = TrialState.PRUNED
        attrs["reason"] = f"early stopping: {record.message}".rstrip(": ")
    else:
        state = TrialState.FAIL
        attrs["reason"] = f"{record.reason.value if record.reason else 'failed'}: {record.message}".rstrip(": ")
    finished = record.finished_at if record.finished_at is not None else record.started_at
    return FrozenTrial(
        number=0,  # the storage numbers trials in the order they are added
        state=state,
        value=None,
        values=values,
        datetime_start=datetime.datetime.fromtimestamp(record.started_at),
        datetime_complete=datetime.datetime.fromtimestamp(finished),
        params=params,
        distributions=dists,
        user_attrs=attrs,
        system_attrs={},
        intermediate_values=_curve(record, objectives[0].name),
        trial_id=0,
    )


def _curve(record: TrialRecord, name: str) -> dict[int, float]:
    """The ``<objective>_curve`` metric ([step, value] pairs) as Optuna's {step: value}."""
    out: dict[int, float] = {}
    for point in record.metrics.get(f"{name}_curve") or []:
        step, value = point
        if value is not None and float(value) == float(value) and abs(float(value)) != float("inf"):
            out[int(step)] = float(value)
    return out


# -- the journal ---------------------------------------------------------------------------------
def open_study(
    run_dir: Path | str, objectives: Sequence[Objective], *, create: bool = True, path: Path | None = None
) -> Any:
    """The run's study in its journal, or in the journal at ``path`` (made with the run's
    directions when ``create``)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    run_dir = Path(run_dir)
    storage = JournalStorage(JournalFileBackend(str(path or journal_path(run_dir))))
    name = study_name(run_dir)
    if not create:
        return optuna.load_study(study_name=name, storage=storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # set_metric_names is experimental
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            directions=[o.direction.value for o in objectives],
            load_if_exists=True,
        )
        if not study.metric_names:
            study.set_metric_names([o.name for o in objectives])
    return study


def torn(journal: Path) -> bool:
    """Whether the journal was cut mid-line (a killed write, a full disk) or holds a line that
    is not JSON: Optuna cannot replay it, and a line appended after it would be lost too."""
    try:
        text = journal.read_bytes()
    except FileNotFoundError:
        return False
    if text and not text.endswith(b"\n"):
        return True
    try:
        for line in text.splitlines():
            json.loads(line)
    except ValueError:
        return True
    return False


def repair(run_dir: Path | str, store: RunStore) -> bool:
    """Rewrite a torn journal from ``run.db``, the source of truth: written aside and renamed
    over it, so it is whole at every moment. Notes written in the dashboard are lost with
    it. Returns whether it was torn. The caller holds the run (its driver, or the lock)."""
    journal = journal_path(run_dir)
    if not torn(journal):
        return False
    staging = journal.with_name(f"{JOURNAL}.rebuilt")
    staging.unlink(missing_ok=True)
    try:
        study = open_study(run_dir, stored_objectives(store), path=staging)
        add_trials(study, store, store.trials())
        staging.replace(journal)
    finally:
        staging.unlink(missing_ok=True)
    return True


def study_name(run_dir: Path | str) -> str:
    return Path(os.path.abspath(run_dir)).name


def stored_space(store: RunStore) -> SearchSpace:
    return SearchSpace.from_spec((store.meta("config") or {})["search_space"])


def mirrored_ids(study: Any) -> set[int]:
    return {int(t.user_attrs[TRIAL_ID]) for t in study.get_trials(deepcopy=False) if TRIAL_ID in t.user_attrs}


def add_trials(study: Any, store: RunStore, records: Iterable[TrialRecord]) -> int:
    """Add ``records`` (finished trials of ``store``) to ``study``, with their individuals' origin
    and parents; returns how many were added."""
    records = [r for r in records if r.status is not TrialStatus.RUNNING]
    if not records:
        return 0
    space, objectives = stored_space(store), stored_objectives(store)
    individuals = store.individuals()
    trial_of = {i.id: i.trial_id for i in individuals}
    first: dict[int, IndividualRecord] = {}
    for member in individuals:
        if member.trial_id is not None:
            first.setdefault(member.trial_id, member)
    for record in records:
        ind = first.get(record.id)
        parents = [t for t in (trial_of.get(p) for p in ind.parents) if t is not None] if ind else []
        study.add_trial(frozen_trial(record, space, objectives, ind, parents))
    return len(records)


def sync(run_dir: Path | str, store: RunStore | None = None) -> int:
    """Bring the run's journal up to date with its ``run.db`` (made when missing); returns how
    many trials were added. Safe to call at any time when no driver of the run is writing it."""
    own = store is None
    store = RunStore.read(run_dir) if store is None else store
    try:
        repair(run_dir, store)
        study = open_study(run_dir, stored_objectives(store))
        done = mirrored_ids(study)
        return add_trials(study, store, (t for t in store.trials() if t.id not in done))
    finally:
        if own:
            store.close()


class OptunaMirror(RunObserver):
    """Writes each finished trial into the run's Optuna journal as the run goes.

    At start it catches up with everything ``run.db`` holds (a resumed run, a journal that
    was deleted or is behind); then each trial the loop reports is written once it is
    committed. It reads new trials incrementally: the ids above the last one seen, and
    those it saw still running.
    """

    def __init__(self, store: RunStore):
        self.store = store

    def start(self, run: RunInfo) -> None:
        assert self.store.run_dir is not None, "the mirror needs a run directory"
        repair(self.store.run_dir, self.store)  # a journal a killed driver or a full disk cut
        self.study = open_study(self.store.run_dir, run.objectives)
        self.done = mirrored_ids(self.study)
        self.read_up_to, self.running = 0, set[int]()
        self._catch_up()

    def trial(self, record: TrialRecord, cached: bool) -> None:
        if not cached:
            self._catch_up()

    def end(self) -> None:
        self._catch_up()

    def _catch_up(self) -> None:
        seen = self.store.outcomes(after=self.read_up_to, also=sorted(self.running))
        if not seen:
            return
        self.read_up_to = max(self.read_up_to, max(t.id for t in seen))
        self.running = {t.id for t in seen if t.status is TrialStatus.RUNNING}
        new = [t.id for t in seen if t.status is not TrialStatus.RUNNING and t.id not in self.done]
        for trial_id in new:
            self.write(self.store.trial(trial_id))

    def write(self, record: TrialRecord) -> None:
        """One trial into the journal (the step a kill test interrupts)."""
        add_trials(self.study, self.store, [record])
        self.done.add(record.id)


def check_report_to(report_to: Sequence[str]) -> None:
    """``report_to: [optuna]`` without optuna installed is a config error (raised before the run is written)."""
    if "optuna" in report_to and not optuna_installed():
        found = optuna_version()
        what = "is not installed" if found is None else f"needs Optuna 4 or later (found {found})"
        raise ConfigError(f"report_to: optuna {what}; {EXTRA}")


def mirror_for(report_to: Sequence[str], store: RunStore) -> OptunaMirror | None:
    """The mirror ``report_to`` asks for: ``optuna``, or ``auto`` (the default) with optuna installed."""
    if store.run_dir is None:
        return None
    if "optuna" in report_to or ("auto" in report_to and optuna_installed()):
        return OptunaMirror(store)
    return None
