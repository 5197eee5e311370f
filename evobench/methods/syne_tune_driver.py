"""Syne Tune's schedulers behind three calls: suggest, result, error.

This is the loop Syne Tune's ``Tuner`` runs with one worker, on the scheduler's own API:
``suggest`` gives a trial to start (or, for pause-and-resume schedulers such as DyHPO, a
paused one to resume), the trial reports after every epoch, and ``on_trial_result`` says
whether it continues, pauses or stops. It imports nothing of ours, so that it also runs as
a script in another virtual environment: Syne Tune 0.13 (the last release with MOBSTER,
HyperTune and DyHPO) pins numpy below 1.27, which cannot share one with NePS (numpy 2).
As a script it reads one JSON request a line and answers one JSON line:

    {"init": {"method": "MOBSTER", "space": [[name, domain, args], ...], "max_t": 8, "seed": 0}}
    {"suggest": true}                         -> {"trial": 3, "config": {...}, "resumed": false} or {"trial": null}
    {"result": [trial, epoch, value, final]}  -> {"decision": "CONTINUE" | "PAUSE" | "STOP"}
    {"error": trial}                          -> {}
"""

from __future__ import annotations

import datetime
import json
import random
import sys
from typing import Any

import numpy as np

METRIC, RESOURCE = "objective", "epoch"
# The name each method has in syne_tune.optimizer.baselines, and the release that has it.
BASELINES = {"asha": "ASHA", "bohb": "BOHB", "mobster": "MOBSTER", "hypertune": "HyperTune", "dyhpo": "DyHPO"}


class Driver:
    """One scheduler with its defaults: ``max_t`` epochs a trial, minimising ``objective``."""

    def __init__(self, method: str, space: list[list[Any]], max_t: int, seed: int) -> None:
        from importlib.metadata import version

        import syne_tune.config_space as sp
        from syne_tune.backend.trial_status import Trial
        from syne_tune.optimizer import baselines

        random.seed(seed)
        np.random.seed(seed)  # ASHA 0.16 draws a new trial's bracket from numpy's global generator
        self.Trial = Trial
        config_space = {name: getattr(sp, domain)(*args) for name, domain, args in space}
        self.names = [name for name, _, _ in space]
        scheduler = getattr(baselines, BASELINES[method])
        self.old = version("syne-tune").startswith("0.13")  # 0.13 takes resource_attr and mode
        if self.old:
            self.scheduler = scheduler(
                config_space, metric=METRIC, resource_attr=RESOURCE, max_t=max_t, mode="min", random_seed=seed
            )
        else:
            self.scheduler = scheduler(
                config_space, metric=METRIC, time_attr=RESOURCE, max_t=max_t, do_minimize=True, random_seed=seed
            )
        self.trials: dict[int, Any] = {}

    def suggest(self) -> tuple[int, dict[str, Any], bool] | None:
        """(trial id, config, resumed) of the next trial to train, or None when the scheduler has none."""
        new_id = len(self.trials)
        suggestion = self.scheduler.suggest(new_id) if self.old else self.scheduler.suggest()
        if suggestion is None:
            return None
        if suggestion.spawn_new_trial_id:
            trial = self.Trial(trial_id=new_id, config=suggestion.config, creation_time=datetime.datetime.now())
            self.trials[new_id] = trial
            self.scheduler.on_trial_add(trial)
            resumed = False
        else:
            trial = self.trials[suggestion.checkpoint_trial_id]
            if suggestion.config is not None:
                trial.config = suggestion.config
            resumed = True
        config = {k: _plain(trial.config[k]) for k in self.names}
        return trial.trial_id, config, resumed

    def result(self, trial_id: int, epoch: int, value: float, final: bool) -> str:
        """The scheduler's decision after the trial's value at ``epoch`` (``final``: its last epoch)."""
        trial, result = self.trials[trial_id], {METRIC: value, RESOURCE: epoch}
        decision = self.scheduler.on_trial_result(trial, result)
        if final:
            self.scheduler.on_trial_complete(trial, result)
        return str(decision)

    def error(self, trial_id: int) -> None:
        self.scheduler.on_trial_error(self.trials[trial_id])


def _plain(value: Any) -> Any:
    """A config value as JSON has it (numpy scalars as Python ones)."""
    return value.item() if hasattr(value, "item") else value


def main() -> None:
    """Serve one driver over stdin/stdout (one JSON object a line)."""
    import logging

    logging.disable(logging.WARNING)
    out, sys.stdout = sys.stdout, sys.stderr  # Syne Tune prints notices on import: the pipe carries answers only
    driver: Driver | None = None
    for line in sys.stdin:
        request = json.loads(line)
        if "init" in request:
            driver = Driver(**request["init"])
            answer: dict[str, Any] = {}
        elif driver is None:
            raise SystemExit("syne_tune_driver: the first request must be init")
        elif "suggest" in request:
            got = driver.suggest()
            answer = {"trial": None} if got is None else dict(zip(("trial", "config", "resumed"), got))
        elif "result" in request:
            answer = {"decision": driver.result(*request["result"])}
        else:
            driver.error(request["error"])
            answer = {}
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
