"""A surrogate benchmark built from real QLoRA trials, as YAHPO Gym and LCBench build theirs.

Why: a real SmolLM2 fine-tune takes ~25 s, so comparing tuners over many seeds on it takes
days; a model fitted on the trials ``collect_qlora_trials.py`` collected answers in about a
millisecond, with the real landscape, its divergences and its low-fidelity rankings. The
model, its inputs and the cut of divergent perplexities are ``evobench.tasks.surrogate``'s.

Model selection compares the candidates by cross-validation grouped by trial (a trial's curve
points never straddle folds) on the development trials only; the held-out trials, a fixed
quarter chosen by a hash of the index (Sobol indices mod 4 would be a corner of the space),
serve only the final report. The benchmark then refits ``MODEL`` on every trial.

    python experiments/qlora_surrogate.py [--data-file PATH] [--model NAME] [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from evobench.tasks.qlora_data import DATA_FILE, curve_rows, held_out_split, load_data, require_data_file
from evobench.tasks.surrogate import (
    FOLDS,
    MODEL,
    candidates,
    cross_validate,
    fence,
    fit_model,
    rank_vs_final,
    robust_sigma,
    scores,
)

FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # where the curves of an eval_every=2, 4,096-token collection have points
QUICK_TRIALS = 60


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
    found = {}
    for name in candidates(rows.X.shape[1], args.quick):
        found[name] = cross_validate(name, rows, quick=args.quick, folds=folds)
        _row(name, found[name])
    chosen = args.model or max(found, key=lambda n: found[n]["spearman"])
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
        s = scores(pred[at], test.y[at], np.ones(at.sum(), bool), fence(rows.y))
        print(
            f"  {f:<10.2f}{at.sum():>7}{s['spearman']:>10.3f}{s['kendall']:>9.3f}{s['rmse']:>10.3f}   "
            f"{rank_vs_final(test, pred, f)}"
        )
    sigma = robust_sigma(pred[test.final] - np.minimum(test.y[test.final], fence(rows.y)))
    print(f"  robust sigma of the final residuals (log perplexity): {sigma:.3f} (--surrogate-noise draws from it)")
    print(f"\nthe benchmark uses {MODEL} refitted on all trials; {time.perf_counter() - t0:.1f} s")


def _row(name: str, s: dict) -> None:
    print(f"  {name:<36}{s['spearman']:>9.3f}{s['kendall']:>9.3f}{s['rmse']:>10.3f}{s['seconds']:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
