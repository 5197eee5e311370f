"""A surrogate benchmark built from real QLoRA trials, as YAHPO Gym and LCBench build theirs.

Why: a real SmolLM2 fine-tune takes ~25 s, so comparing tuners over many seeds on it takes
days; a model fitted on the collected trials answers in about a millisecond, with the real
landscape, its divergences and its low-fidelity rankings.

The model predicts log validation perplexity from each gene's unit value (``Gene.to_unit``;
nominal genes by their index: one-hot measured a little worse) and the fraction of the budget
trained, one row per point of each trial's validation curve, so it answers at any fidelity.
Divergent perplexities (up to 4e7) are cut to Tukey's upper fence (Q3 + 1.5 IQR) of the
training values: a diverged config only needs to rank last, and left whole it swamps the fit.
Candidates are compared by cross-validation grouped by trial (a trial's curve points never
straddle folds) on the development trials only; the held-out quarter serves the fit report.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from evo import SearchSpace
from evobench.tasks.qlora_data import Data, Rows, curve_rows, encode, held_out_split

MODEL = "gp-matern32"  # best dev CV Spearman on 310 trials: 0.893 (matern52 0.889, trees 0.77-0.82, k-nn 0.41)
FOLDS = 5
GP_TUNE_ROWS = 500  # past this, the GP kernel is tuned on a subsample: the fit is cubic in rows


def candidates(n_features: int, quick: bool = False) -> dict[str, Callable[[], Any]]:
    """Regressors worth comparing, each with settings that suit a few hundred rows."""
    from sklearn.ensemble import ExtraTreesRegressor, HistGradientBoostingRegressor, RandomForestRegressor
    from sklearn.neighbors import KNeighborsRegressor

    trees = 50 if quick else 300
    return {
        "gp-matern32": lambda: _gp(n_features, 1.5),
        "gp-matern52": lambda: _gp(n_features, 2.5),
        "random-forest": lambda: RandomForestRegressor(trees, max_features=0.5, random_state=0),
        "extra-trees": lambda: ExtraTreesRegressor(trees, min_samples_leaf=2, random_state=0),
        "gradient-boosting": lambda: HistGradientBoostingRegressor(
            max_iter=200,
            learning_rate=0.05,
            max_leaf_nodes=8,
            min_samples_leaf=5,
            l2_regularization=1.0,
            random_state=0,
        ),
        "k-nn": lambda: KNeighborsRegressor(10, weights="distance"),  # inputs are all in [0, 1] already
    }


def _gp(n_features: int, nu: float) -> Any:
    """Matern with one length scale per input (irrelevant genes grow long ones) plus noise."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    kernel = ConstantKernel(1.0) * Matern(np.ones(n_features), length_scale_bounds=(1e-2, 1e2), nu=nu)
    return GaussianProcessRegressor(kernel + WhiteKernel(1e-2, (1e-6, 1.0)), normalize_y=True, random_state=0)


def fence(y: np.ndarray) -> float:
    q1, q3 = np.percentile(y, [25, 75])
    return float(q3 + 1.5 * (q3 - q1))


def fit_model(name: str, rows: Rows, *, cap: bool = True, quick: bool = False) -> Any:
    """The estimator ``name`` fitted to ``rows``' log perplexity (cut at the fence when ``cap``)."""
    y = np.minimum(rows.y, fence(rows.y)) if cap else rows.y
    model = candidates(rows.X.shape[1], quick)[name]()
    with warnings.catch_warnings():  # length scales at their bounds are the point of ARD, not a problem
        warnings.simplefilter("ignore")
        if name.startswith("gp") and len(y) > GP_TUNE_ROWS:
            pick = np.random.default_rng(0).choice(len(y), GP_TUNE_ROWS, replace=False)
            model.fit(rows.X[pick], y[pick])
            model = type(model)(model.kernel_, normalize_y=True, optimizer=None)  # same kernel, every row
        model.fit(rows.X, y)
    return model


@dataclass(frozen=True)
class TrialSurrogate:
    """A fitted model: log validation perplexity of a genome at fractions of the budget."""

    name: str
    space: SearchSpace
    estimator: Any
    onehot: bool = False

    def predict(self, genome: Mapping[str, Any], fractions: list[float]) -> np.ndarray:
        X = np.array([encode(self.space, genome, f, self.onehot) for f in fractions])
        return np.asarray(self.estimator.predict(X), dtype=float)


def fit_surrogate(data: Data, trials: list[dict[str, Any]], name: str = MODEL, quick: bool = False) -> TrialSurrogate:
    return TrialSurrogate(name, data.space, fit_model(name, curve_rows(data, trials), quick=quick))


# -- how well it fits -------------------------------------------------------------------------
def cross_validate(name: str, rows: Rows, *, cap: bool = True, quick: bool = False, folds: int = FOLDS) -> dict:
    """Out-of-fold predictions, grouped by trial; scores on the final points and all points."""
    from sklearn.model_selection import GroupKFold

    t0, pred = time.perf_counter(), np.zeros(len(rows.y))
    for fit, test in GroupKFold(folds).split(rows.X, rows.y, rows.trial):
        pred[test] = fit_model(name, rows.take(fit), cap=cap, quick=quick).predict(rows.X[test])
    return {**scores(pred, rows.y, rows.final, fence(rows.y)), "seconds": time.perf_counter() - t0}


def scores(pred: np.ndarray, y: np.ndarray, ranked: np.ndarray, cut: float) -> dict[str, float]:
    """Rank correlations on the ``ranked`` points; RMSE on all of them, against values cut at
    ``cut`` (uncut, one diverged trial would decide it)."""
    from scipy.stats import kendalltau, spearmanr

    return {
        "spearman": float(spearmanr(pred[ranked], y[ranked])[0]),
        "kendall": float(kendalltau(pred[ranked], y[ranked])[0]),
        "rmse": float(np.sqrt(np.mean((pred - np.minimum(y, cut)) ** 2))),
    }


def held_out_sigma(data: Data, name: str = MODEL) -> float:
    """Robust sigma (1.4826 MAD) of held-out residuals of the final log perplexity, for a model fitted on dev."""
    dev, held = held_out_split(data.trials)
    fit, test = curve_rows(data, dev), curve_rows(data, held)
    test = test.take(test.final)
    return robust_sigma(fit_model(name, fit).predict(test.X) - np.minimum(test.y, fence(fit.y)))


def robust_sigma(residual: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(residual - np.median(residual))))


def rank_vs_final(test: Rows, pred: np.ndarray, f: float) -> str:
    """How well the value at fraction f ranks trials by their final value, in the data and in the model:
    what multi-fidelity methods rely on, so the surrogate should not make it better than it is."""
    if f >= 1:
        return "-"
    from scipy.stats import spearmanr

    at, final = np.isclose(test.fraction, f), test.final
    trials = np.intersect1d(test.trial[at], test.trial[final])
    if len(trials) < 3:
        return "-"
    a, b = (np.array([np.flatnonzero(mask & (test.trial == t))[0] for t in trials]) for mask in (at, final))
    return f"{spearmanr(test.y[a], test.y[b])[0]:.3f} / {spearmanr(pred[a], pred[b])[0]:.3f}"
