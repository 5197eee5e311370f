"""A config trained in increments on the ledger, each continuing the last one's checkpoint.

The peers that decide after every validation (Syne Tune's schedulers, NePS's Hyperband,
Optuna's pruners) train a trial up to one report point at a time. :class:`Chunks` is that
trial: ``advance(f)`` trains from where it stands to fraction ``f`` of the budget, so a
trial paused and resumed later pays only for the tokens it trains after the pause, as ours
does. Each chunk is one fitness call, paid on the ledger; a checkpoint is kept only for
the chunk last reached.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from evo.trial import Trial
from evobench.ledger import Ledger
from evobench.tasks.fidelity import Task


def trial_seed(seed: int, i: int) -> int:
    """The training seed of a peer's trial ``i`` in the run of ``seed``."""
    return int(np.random.SeedSequence(seed, spawn_key=(i,)).generate_state(1)[0])


class Chunks:
    """One trial of a peer: its config, how far it has trained and the checkpoint there."""

    def __init__(
        self, task: Task, ledger: Ledger, config: dict[str, Any], number: int, seed: int, scratch: Path
    ) -> None:
        self.task, self.ledger, self.number = task, ledger, number
        self.config = {**task.fixed, **config}
        self.seed = trial_seed(seed, number)
        self.scratch = scratch
        self.reached = 0.0  # fraction of the budget trained so far
        self.checkpoint: Path | None = None
        self.chunks = 0

    def advance(self, fidelity: float) -> float | None:
        """Train on to ``fidelity`` (a fraction of the budget) and return the objective there;
        None when the trial failed (it cannot be continued then)."""
        fidelity = min(float(fidelity), 1.0)
        here = self.scratch / f"{self.number}-{self.chunks}" if fidelity < 1 else None
        trial = Trial(
            self.number,
            self.config,
            self.task.budget,
            self.seed,
            fidelity=fidelity,
            resume_from=self.checkpoint,
            checkpoint_dir=here,
        )
        result = self.ledger.evaluate(trial)
        self.chunks += 1
        if self.checkpoint is not None:
            shutil.rmtree(self.checkpoint, ignore_errors=True)
        self.checkpoint, self.reached = here, fidelity
        if not result.ok:
            return None
        value = result.values.get(self.ledger.objectives[0].name)
        return float(value) if value is not None and np.isfinite(value) else None
