"""Which hyperparameters mattered: Optuna's fANOVA on a run's completed whole-budget trials.

fANOVA (``optuna.importance.FanovaImportanceEvaluator``) fits a random forest to the trials
and splits the variance of its prediction over the genes. We use it rather than PED-ANOVA,
which compares the best trials' genes with all trials': an evolved population drifts on
the genes that do not matter (they ride along with the ones that do), so the best trials,
bred late, differ from the early ones on them too; on the synthetic landscape PED-ANOVA
ranked weight decay, whose effect is below the noise, first. The forest sees the trials the
search chose, concentrated where it converged: the ranking describes that region.

Reads ``run.db`` (not the journal), by the first objective. Genes that matter little could
be fixed at the best trial's value in the next run: a narrower space to warm-start from.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from evo.evaluation import stored_objectives
from evo.optuna import EXTRA, frozen_trial, stored_space
from evo.storage import RunStore, TrialRecord
from evo.trial import ConfigError, Direction, Objective

METHOD = "fANOVA"
MIN_TRIALS = 10  # fewer and a forest has nothing to split
TRUSTED_PER_GENE = 10  # below 10 trials per searched gene the ranking is a hint
FIXABLE_SHARE = 0.5  # a gene under half an equal share of the importance could be fixed
FOREST = {"n_trees": 64, "max_depth": 8, "seed": 0}  # depth 8: 2 s at 1,000 trials, where 64 took 50 s


@dataclass(frozen=True)
class Importance:
    """Importances (summing to 1, most important first) of ``objective`` over ``trials`` trials."""

    objective: str
    trials: int
    genes: int  # how many genes the space searches
    scores: dict[str, float] = field(default_factory=dict)
    best: dict[str, Any] = field(default_factory=dict)  # the best trial's genes
    note: str | None = None  # why it is missing or not to be trusted yet

    @property
    def trusted(self) -> bool:
        return bool(self.scores) and self.trials >= TRUSTED_PER_GENE * self.genes

    @property
    def fixable(self) -> dict[str, Any]:
        """Genes that mattered least, with the best trial's value: what the next run could fix."""
        if not self.scores:
            return {}
        share = FIXABLE_SHARE / len(self.scores)
        return {name: self.best[name] for name, score in self.scores.items() if score < share and name in self.best}

    def fixed_yaml(self) -> str:
        """The fixable genes as a ``fixed:`` mapping to paste into the next run's config."""
        return yaml.safe_dump({"fixed": self.fixable}, default_flow_style=None, sort_keys=False, width=10**6).strip()

    def lines(self) -> list[str]:
        """The importance as text, for ``evo status --importance``."""
        if not self.scores:
            return [f"hyperparameter importance: {self.note}"]
        out = [f"hyperparameter importance ({METHOD}, {self.objective}, {self.trials} whole-budget trials):"]
        width = max(len(n) for n in self.scores)
        for name, score in self.scores.items():
            out.append(f"  {name.ljust(width)}  {score:6.3f}  {'#' * round(score * 40)}")
        if self.note:
            out.append(f"note: {self.note}")
        if self.fixable:
            out.append(f"could be fixed at the best trial's value in the next run: {self.fixed_yaml()}")
        return out


def missing_packages() -> list[str]:
    """What importance needs that is not installed (as pip names them)."""
    found = {"optuna": "optuna", "sklearn": "scikit-learn"}
    return [pip for module, pip in found.items() if importlib.util.find_spec(module) is None]


def importance(run_dir: Path | str, *, required: bool = False) -> Importance:
    """The gene importance of a stored run (read-only; a running run is fine). Without optuna
    and scikit-learn it is a note, or with ``required`` a ConfigError naming the extra."""
    found, kept, objective = _prepare(run_dir, required=required)
    if found.note:
        return found
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=objective.direction.value)
    study.add_trials([t for _, t in kept])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a gene that never varied
        try:
            scores = get_param_importances(study, evaluator=FanovaImportanceEvaluator(**FOREST))
        except RuntimeError as exc:  # Optuna's fANOVA on trials that all scored the same
            if "zero total variance" not in str(exc):
                raise
            return replace(found, note=f"the {found.trials} whole-budget trials all scored the same: no gene mattered")
    sign = 1 if objective.direction is Direction.MINIMIZE else -1
    best = min((r for r, _ in kept), key=lambda r: sign * r.values[objective.name])
    note = None
    if found.trials < found.genes * TRUSTED_PER_GENE:
        note = f"only {found.trials} whole-budget trials for {found.genes} genes: a hint until about {found.genes * TRUSTED_PER_GENE}"
    genes = {k: v for k, v in best.config.items() if k in scores}
    return replace(found, scores={k: float(v) for k, v in scores.items()}, best=genes, note=note)


def why_none(run_dir: Path | str) -> str | None:
    """Why the run has no importance yet (checked without fitting the forest), or None."""
    return _prepare(run_dir, required=False)[0].note


def _prepare(run_dir: Path | str, *, required: bool) -> tuple[Importance, list[tuple[TrialRecord, Any]], Objective]:
    """The run's completed whole-budget trials, each with its Optuna trial, and the first objective;
    or the importance with a note saying why there is none."""
    with RunStore.read(run_dir) as store:
        objective = stored_objectives(store)[0]
        space = stored_space(store)
        records = [t for t in store.trials() if t.ok and t.full]
    found = Importance(objective.name, len(records), len(space.genes))
    missing = missing_packages()
    if missing:
        note = f"needs {' and '.join(missing)}: {EXTRA}"
        if required:
            raise ConfigError(f"--importance {note}")
        return replace(found, note=note), [], objective
    trials = [frozen_trial(t, space, (objective,)) for t in records]
    # a baseline or a warm start's import may hold a value outside the space (or leave a gene
    # out); Optuna would then leave that gene out for every trial, so the trial is left out
    kept = [(r, t) for r, t in zip(records, trials) if len(t.params) == len(space.genes)]
    found = replace(found, trials=len(kept))
    if len(kept) < MIN_TRIALS:
        return replace(found, note=f"{len(kept)} completed whole-budget trials; it needs {MIN_TRIALS}"), [], objective
    return found, kept, objective
