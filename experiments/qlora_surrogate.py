"""A surrogate benchmark built from real QLoRA trials, as YAHPO Gym and LCBench build theirs.

Why: a real SmolLM2 fine-tune takes ~25 s, so comparing tuners over many seeds on it takes
days; a model fitted on the trials ``collect_qlora_trials.py`` collected answers in about a
millisecond, with the real landscape, its divergences and its low-fidelity rankings.

The model predicts log validation perplexity from each gene's unit value (``Gene.to_unit``;
nominal genes by their index: one-hot measured a little worse) and the fraction of the budget
trained, one row per point of each trial's validation curve, so it answers at any fidelity.
Divergent perplexities (up to 4e7) are cut to Tukey's upper fence (Q3 + 1.5 IQR) of the
training values: a diverged config only needs to rank last, and left whole it swamps the fit.

Model selection compares the candidates by cross-validation grouped by trial (a trial's curve
points never straddle folds) on the development trials only; the held-out trials, a fixed
quarter chosen by a hash of the index (Sobol indices mod 4 would be a corner of the space),
serve only the final report. The benchmark then refits ``MODEL`` on every trial.

    python experiments/qlora_surrogate.py [--data-file PATH] [--model NAME] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from evo._space import SearchSpace  # noqa: E402
from evo.trial import Budget  # noqa: E402
from fitness.qlora.genes import GENES  # noqa: E402

DATA_FILE = ROOT / "experiments" / "data" / "smollm2_pydoc_trials.jsonl"
MODEL = "gp-matern32"  # best dev CV Spearman on 310 trials: 0.893 (matern52 0.889, trees 0.77-0.82, k-nn 0.41)
FOLDS = 5
HELD_OUT = 4  # one trial in HELD_OUT is held out
FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # where the curves of an eval_every=2, 4,096-token collection have points
QUICK_TRIALS = 60
GP_TUNE_ROWS = 500  # past this, the GP kernel is tuned on a subsample: the fit is cubic in rows
DEFAULTS = {name: decl.default for name, decl in GENES.items()}
CHECKPOINT_FILE = "surrogate_checkpoint.json"


# -- the data ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Data:
    """A collection's header and its complete trials (failed ones carry no perplexity)."""

    header: dict[str, Any]
    trials: list[dict[str, Any]]
    space: SearchSpace
    budget: Budget
    skipped: int  # failed trials and a torn last line


def require_data_file(path: Path | str) -> None:
    """A missing or empty data file: one line naming it, exit 2, before any fitting."""
    if not Path(path).is_file() or Path(path).stat().st_size == 0:
        print(f"{path}: no trial data (collect it with experiments/collect_qlora_trials.py)", file=sys.stderr)
        raise SystemExit(2)


def load_data(path: Path | str = DATA_FILE, first: int | None = None) -> Data:
    """Read a collection; the collector may be appending, so a line that does not parse is skipped.
    ``first``: only trials of index below it, so a report can be repeated while the file grows."""
    lines = Path(path).read_text().splitlines()
    header = json.loads(lines[0]) if lines else {}
    if header.get("kind") != "header":
        raise ValueError(f"{path}: line 1 is not a collection header")
    trials, skipped = [], 0
    for line in lines[1:]:
        try:
            row = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if first is not None and row.get("index", 0) >= first:
            continue
        if row.get("kind") == "trial" and row.get("status") == "complete" and row.get("val_perplexity_curve"):
            trials.append(row)
        else:
            skipped += 1
    budget = Budget(**{k: v for k, v in header["budget"].items() if k in ("steps", "tokens")})
    return Data(header, trials, SearchSpace.from_spec(header["search_space"]), budget, skipped)


def tokens_per_step(config: Mapping[str, Any]) -> int:
    c = {**DEFAULTS, **config}
    return int(c["per_device_train_batch_size"]) * int(c["gradient_accumulation_steps"]) * int(c["max_seq_length"])


def budget_steps(budget: Budget, config: Mapping[str, Any]) -> int:
    """Optimizer steps of a whole-budget trial, as the QLoRA fitness counts them."""
    if budget.tokens:
        return max(1, budget.tokens // tokens_per_step(config))
    return budget.steps or 1


def is_held_out(index: int) -> bool:
    return int(hashlib.sha256(str(index).encode()).hexdigest(), 16) % HELD_OUT == 0


def encode(space: SearchSpace, genome: Mapping[str, Any], fraction: float, onehot: bool = False) -> list[float]:
    """One model input row: every gene in [0, 1], then the budget fraction."""
    row: list[float] = []
    for gene in space:
        value = genome[gene.name]
        if onehot and gene.nominal and gene.choices and len(gene.choices) > 2:
            row.extend(float(gene.index(value) == i) for i in range(len(gene.choices)))
        else:
            row.append(gene.to_unit(value))
    return [*row, fraction]


@dataclass(frozen=True)
class Rows:
    """Model rows of some trials: X, log perplexity y, the trial index, the fraction."""

    X: np.ndarray
    y: np.ndarray
    trial: np.ndarray
    fraction: np.ndarray

    @property
    def final(self) -> np.ndarray:
        return np.isclose(self.fraction, 1.0)

    def take(self, mask: np.ndarray) -> Rows:
        return Rows(self.X[mask], self.y[mask], self.trial[mask], self.fraction[mask])


def curve_rows(data: Data, trials: list[dict[str, Any]], onehot: bool = False) -> Rows:
    X, y, index, fraction = [], [], [], []
    for t in trials:
        steps = budget_steps(data.budget, t["config"])
        for step, ppl in t["val_perplexity_curve"]:
            if ppl is None or not ppl > 0:
                continue
            X.append(encode(data.space, t["genome"], step / steps, onehot))
            y.append(math.log(ppl))
            index.append(t["index"])
            fraction.append(step / steps)
    return Rows(np.array(X), np.array(y), np.array(index), np.array(fraction))


# -- the models ----------------------------------------------------------------------------
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
class Surrogate:
    """A fitted model: log validation perplexity of a genome at fractions of the budget."""

    name: str
    space: SearchSpace
    estimator: Any
    onehot: bool = False

    def predict(self, genome: Mapping[str, Any], fractions: list[float]) -> np.ndarray:
        X = np.array([encode(self.space, genome, f, self.onehot) for f in fractions])
        return np.asarray(self.estimator.predict(X), dtype=float)


def fit_surrogate(data: Data, trials: list[dict[str, Any]], name: str = MODEL, quick: bool = False) -> Surrogate:
    return Surrogate(name, data.space, fit_model(name, curve_rows(data, trials), quick=quick))


# -- the fit report ------------------------------------------------------------------------
def held_out_split(trials: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    dev = [t for t in trials if not is_held_out(t["index"])]
    return dev, [t for t in trials if is_held_out(t["index"])]


def cross_validate(name: str, rows: Rows, *, cap: bool = True, quick: bool = False, folds: int = FOLDS) -> dict:
    """Out-of-fold predictions, grouped by trial; scores on the final points and all points."""
    from sklearn.model_selection import GroupKFold

    t0, pred = time.perf_counter(), np.zeros(len(rows.y))
    for fit, test in GroupKFold(folds).split(rows.X, rows.y, rows.trial):
        pred[test] = fit_model(name, rows.take(fit), cap=cap, quick=quick).predict(rows.X[test])
    return {**_scores(pred, rows.y, rows.final, fence(rows.y)), "seconds": time.perf_counter() - t0}


def _scores(pred: np.ndarray, y: np.ndarray, ranked: np.ndarray, cut: float) -> dict[str, float]:
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
    return _robust_sigma(fit_model(name, fit).predict(test.X) - np.minimum(test.y, fence(fit.y)))


def _robust_sigma(residual: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(residual - np.median(residual))))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-file", type=Path, default=DATA_FILE)
    p.add_argument("--model", choices=list(candidates(1)), help="report on this one instead of the best by dev CV")
    p.add_argument("--quick", action="store_true", help=f"first {QUICK_TRIALS} trials, 3 folds, small forests")
    p.add_argument("--trials", type=int, help="only the trials of index below this (a repeatable report)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    require_data_file(args.data_file)
    data = load_data(args.data_file, args.trials)
    trials = data.trials[:QUICK_TRIALS] if args.quick else data.trials
    folds = 3 if args.quick else FOLDS
    dev, held = held_out_split(trials)
    rows = curve_rows(data, dev)
    print(
        f"{args.data_file}: {len(trials)} trials ({data.skipped} lines skipped); dev {len(dev)} trials, "
        f"{len(rows.y)} curve points; held out {len(held)} trials"
    )
    print(f"\nmodel selection: {folds}-fold CV grouped by trial, dev only (Spearman/Kendall on final perplexity)")
    print(f"  {'model':<36}{'Spearman':>9}{'Kendall':>9}{'RMSE log':>10}{'seconds':>9}")
    scores = {}
    for name in candidates(rows.X.shape[1], args.quick):
        scores[name] = cross_validate(name, rows, quick=args.quick, folds=folds)
        _row(name, scores[name])
    chosen = args.model or max(scores, key=lambda n: scores[n]["spearman"])
    onehot_rows = curve_rows(data, dev, onehot=True)
    _row(f"{chosen}, one-hot", cross_validate(chosen, onehot_rows, quick=args.quick, folds=folds))
    _row(f"{chosen}, divergence not cut", cross_validate(chosen, rows, cap=False, quick=args.quick, folds=folds))

    model = fit_model(chosen, rows, quick=args.quick)
    test = curve_rows(data, held)
    pred = model.predict(test.X)
    print(f"\nheld out: {chosen} fitted on dev, {len(held)} unseen trials")
    print(
        f"  {'fraction':<10}{'points':>7}{'Spearman':>10}{'Kendall':>9}{'RMSE log':>10}   rank vs final: real / model"
    )
    for f in FRACTIONS:
        at = np.isclose(test.fraction, f)
        if at.sum() < 3:
            continue
        s = _scores(pred[at], test.y[at], np.ones(at.sum(), bool), fence(rows.y))
        print(
            f"  {f:<10.2f}{at.sum():>7}{s['spearman']:>10.3f}{s['kendall']:>9.3f}{s['rmse']:>10.3f}   {_vs_final(test, pred, f)}"
        )
    sigma = _robust_sigma(pred[test.final] - np.minimum(test.y[test.final], fence(rows.y)))
    print(f"  robust sigma of the final residuals (log perplexity): {sigma:.3f} (--surrogate-noise draws from it)")
    print(f"\nthe benchmark uses {MODEL} refitted on all trials; {time.perf_counter() - t0:.1f} s")


def _row(name: str, s: dict) -> None:
    print(f"  {name:<36}{s['spearman']:>9.3f}{s['kendall']:>9.3f}{s['rmse']:>10.3f}{s['seconds']:>9.1f}", flush=True)


def _vs_final(test: Rows, pred: np.ndarray, f: float) -> str:
    """How well the value at fraction f ranks trials by their final value, in the data and in the model:
    what multi-fidelity methods rely on, so the surrogate should not make it better than it is."""
    if f >= 1:
        return "-"
    from scipy.stats import spearmanr

    at, final = np.isclose(test.fraction, f), test.final
    trials = np.intersect1d(test.trial[at], test.trial[final])
    if len(trials) < 3:
        return "-"
    pick = lambda mask: np.array([np.flatnonzero(mask & (test.trial == t))[0] for t in trials])  # noqa: E731
    a, b = pick(at), pick(final)
    return f"{spearmanr(test.y[a], test.y[b])[0]:.3f} / {spearmanr(pred[a], pred[b])[0]:.3f}"


if __name__ == "__main__":
    main()
