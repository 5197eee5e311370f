"""The real QLoRA trials the surrogate is fitted on, as experiments/collect_qlora_trials.py wrote them.

Reading tolerates a collector that is still appending (a line that does not parse is
skipped). The step arithmetic is the QLoRA fitness's own (``parse_genes``, ``steps_for``),
so a trial's curve points land on the budget fractions the real trial trained.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evo import SearchSpace
from evo.trial import Budget
from evobench.paths import DATA_DIR
from fitness.qlora.genes import TrialConfig, parse_genes
from fitness.qlora.spec import LRScaling

DATA_FILE = DATA_DIR / "smollm2_pydoc_trials.jsonl"
HELD_OUT = 4  # one trial in HELD_OUT is held out


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


def trial_config(config: Mapping[str, Any]) -> TrialConfig:
    """The genes as the QLoRA fitness reads them (its defaults where ``config`` has none)."""
    return parse_genes(config, lr_scaling=LRScaling.NONE, lr_reference_batch=1)[0]  # steps ignore the lr


def budget_steps(budget: Budget, config: Mapping[str, Any]) -> int:
    """Optimizer steps of a whole-budget trial, as the QLoRA fitness counts them."""
    from fitness.qlora.training.train import steps_for  # imports torch, so only here

    return steps_for(budget, trial_config(config))


def is_held_out(index: int) -> bool:
    return int(hashlib.sha256(str(index).encode()).hexdigest(), 16) % HELD_OUT == 0


def held_out_split(trials: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    dev = [t for t in trials if not is_held_out(t["index"])]
    return dev, [t for t in trials if is_held_out(t["index"])]


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
    """One row per point of each trial's validation curve."""
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
