"""Which trial an index is: point i of a scrambled Sobol sequence over the search space, and
a training seed from the index, so any machine collecting index i writes the same trial.

Point i of ``scipy.stats.qmc.Sobol(d, scramble=True, seed=sample_seed)`` maps gene by gene
through ``gene.from_share`` (a discrete gene's n values spread evenly over [0, 1);
``from_unit`` alone gives the two end values half the share of the others). Training seed of
trial i: ``SeedSequence(sample_seed, spawn_key=(i,))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from evo import SearchSpace
from evo.trial import Budget, ConfigError, Trial

# --quick: a trial in well under a second on a tiny model (the test's)
QUICK_FITNESS = {"validation_tokens": 256, "eval_seq_length": 64, "device": "cpu", "trial_timeout": 120}
QUICK_BUDGET = {"steps": 4}


@dataclass(frozen=True)
class CollectionPlan:
    """What the collection evaluates: every trial is ``trial(i)``."""

    space: SearchSpace
    fixed: dict[str, Any]
    budget: Budget
    fitness_spec: dict[str, Any]
    sample_seed: int
    eval_every: int

    def genome(self, index: int) -> dict[str, Any]:
        u = sobol_points(len(self.space), self.sample_seed, index + 1)[index]
        return {gene.name: gene.from_share(x) for gene, x in zip(self.space, u)}

    def seed(self, index: int) -> int:
        return int(np.random.SeedSequence(self.sample_seed, spawn_key=(index,)).generate_state(1)[0])

    def trial(self, index: int, genome: dict[str, Any]) -> Trial:
        return Trial(trial_id=index, config={**self.fixed, **genome}, budget=self.budget, seed=self.seed(index))

    def identity(self, fingerprint: str) -> dict[str, Any]:
        """Everything that makes two trials of the same index comparable."""
        return {
            "fitness_fingerprint": fingerprint,
            "eval_every": self.eval_every,
            "budget": self.budget.as_dict(),
            "search_space": self.space.to_spec(),
            "fixed": self.fixed,
            "sampler": {
                "kind": "sobol",
                "scramble": True,
                "seed": self.sample_seed,
                "discrete": "equal-share",
                "training_seed": "SeedSequence(seed, spawn_key=(index,))",
            },
        }


def load_plan(options: Any) -> CollectionPlan:
    """The plan of the command's options (``config``, ``eval_every``, ``quick``, ``model``,
    ``sample_seed``); a config that cannot be read is a ConfigError naming ``--config``."""
    try:
        config = yaml.safe_load(Path(options.config).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--config: {exc}".splitlines()[0]) from None
    if not isinstance(config, dict) or "search_space" not in config or "fitness" not in config:
        raise ConfigError(f"--config: {options.config} needs search_space and fitness sections")
    fitness_spec = {**config["fitness"], "eval_every": options.eval_every}
    budget = config.get("budget") or {}
    if options.quick:
        fitness_spec.update(QUICK_FITNESS)
        budget = QUICK_BUDGET
    if options.model:
        fitness_spec["model"] = options.model
    return CollectionPlan(
        SearchSpace.from_spec(config["search_space"]),
        dict(config.get("fixed") or {}),
        Budget(**budget),
        fitness_spec,
        options.sample_seed,
        options.eval_every,
    )


def sobol_points(d: int, seed: int, n: int) -> np.ndarray:
    """The first >= n scrambled Sobol points (a power of 2; every prefix is the same for a seed)."""
    from scipy.stats import qmc

    return qmc.Sobol(d=d, scramble=True, seed=seed).random_base2(max(0, math.ceil(math.log2(max(n, 1)))))
