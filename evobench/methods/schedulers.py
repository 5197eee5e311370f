"""The peers that schedule trials epoch by epoch: Syne Tune's and NePS's, each through its own API.

A task's trial validates at ``task.points`` report points (its "epochs"): at 1/n, 2/n, ... of
the budget. Each peer gets the same search space our GA searches (choices and stepped
ranges as their values' indices, as for DEHB and SMAC), trains a trial one report point
at a time (:class:`~evobench.methods.chunks.Chunks`: a resumed trial pays only its
increment) and is told the value there, with its defaults otherwise.

- ``st-asha``, ``st-bohb``: Syne Tune 0.16's ``ASHA`` and ``BOHB`` (``max_t`` the report
  points, grace period 1, reduction factor 3, one bracket: its defaults), driven in this process.
- ``st-mobster``, ``st-hypertune``, ``st-dyhpo``: Syne Tune 0.13's (the last release that has
  them), driven in a virtual environment of their own through ``syne_tune_driver.py``'s
  JSON lines, since 0.13 pins numpy below 1.27.
- ``neps-hyperband``, ``neps-ifbo``: NePS 0.17's ``hyperband`` (eta 3) and ``ifbo`` (step 1)
  through its ``AskAndTell``; a promoted config continues its previous rung's checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from evo import GeneKind, SearchSpace
from evobench.ledger import BudgetSpent, Ledger
from evobench.methods.chunks import Chunks
from evobench.methods.mf_peers import decode, grid, ordered
from evobench.methods.syne_tune_driver import Driver
from evobench.tasks.fidelity import Task

SYNE_TUNE = {"st-asha": "asha", "st-bohb": "bohb"}  # Syne Tune 0.16, in this environment
SYNE_TUNE_13 = {"st-mobster": "mobster", "st-hypertune": "hypertune", "st-dyhpo": "dyhpo"}
# Syne Tune 0.13's interpreter: a virtual environment of its own (see docs/benchmarks.md).
ST13_PYTHON = os.environ.get("EVOBENCH_SYNE_TUNE_13", str(Path.home() / ".venvs" / "syne-tune-0.13" / "bin" / "python"))
IFBO_WEIGHTS = Path(os.environ.get("EVOBENCH_IFBO_WEIGHTS", Path.home() / ".cache" / "evobench" / "ifbo"))
DRIVER = Path(__file__).with_name("syne_tune_driver.py")


def syne_tune_space(space: SearchSpace) -> list[list[Any]]:
    """The space as Syne Tune domains, ``[name, domain, args]``: choices and stepped ranges as
    their values' indices (``ordinal`` where ordered, ``choice`` where not), ranges as ranges."""
    out: list[list[Any]] = []
    for g in space:
        values = grid(g)
        if values is not None:
            indices = list(range(len(values)))
            out.append([g.name, "ordinal" if ordered(g) and len(values) > 1 else "choice", [indices]])
        elif g.kind is GeneKind.INT:
            out.append([g.name, "lograndint" if g.log else "randint", [int(g.low), int(g.high)]])
        else:
            out.append([g.name, "loguniform" if g.log else "uniform", [float(g.low), float(g.high)]])
    return out


class _Bridge:
    """A :class:`Driver` in Syne Tune 0.13's environment, over a pipe."""

    def __init__(self, **init: Any) -> None:
        self.process = subprocess.Popen(
            [ST13_PYTHON, str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self._ask({"init": init})

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"Syne Tune 0.13's driver ({ST13_PYTHON}) ended; its error is above")
        return json.loads(line)

    def suggest(self) -> tuple[int, dict[str, Any], bool] | None:
        got = self._ask({"suggest": True})
        return None if got["trial"] is None else (got["trial"], got["config"], got["resumed"])

    def result(self, trial_id: int, epoch: int, value: float, final: bool) -> str:
        return self._ask({"result": [trial_id, epoch, value, final]})["decision"]

    def error(self, trial_id: int) -> None:
        self._ask({"error": trial_id})

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def run_syne_tune(task: Task, ledger: Ledger, seed: int, budget_trials: int, method: str) -> None:
    """One worker's Tuner loop: a trial trains epoch by epoch until the scheduler stops or pauses it."""
    space = SearchSpace.from_spec(task.space)
    init = {"space": syne_tune_space(space), "max_t": task.points, "seed": seed}
    driver: Any = (
        Driver(SYNE_TUNE[method], **init) if method in SYNE_TUNE else _Bridge(method=SYNE_TUNE_13[method], **init)
    )
    n = task.points
    trials: dict[int, Chunks] = {}
    with tempfile.TemporaryDirectory(prefix="bench-st-") as scratch:
        try:
            while (got := driver.suggest()) is not None:
                trial_id, values, _ = got
                run = trials.get(trial_id) or Chunks(task, ledger, decode(values, space), trial_id, seed, Path(scratch))
                trials[trial_id] = run
                for epoch in range(round(run.reached * n) + 1, n + 1):
                    value = run.advance(epoch / n)
                    if value is None:
                        driver.error(trial_id)
                        break
                    if driver.result(trial_id, epoch, value, epoch == n) != "CONTINUE" or epoch == n:
                        break
        except BudgetSpent:
            pass
        finally:
            if isinstance(driver, _Bridge):
                driver.close()


def neps_space(space: SearchSpace, points: int) -> Any:
    """The space as NePS's, with the report point as its fidelity (1 to ``points``)."""
    import neps

    params: dict[str, Any] = {}
    for g in space:
        values = grid(g)
        if values is not None:
            params[g.name] = neps.HPOCategorical(list(range(len(values))))
        elif g.kind is GeneKind.INT:
            params[g.name] = neps.HPOInteger(int(g.low), int(g.high), log=g.log)
        else:
            params[g.name] = neps.HPOFloat(float(g.low), float(g.high), log=g.log)
    params["epoch"] = neps.HPOInteger(1, points, is_fidelity=True)
    return neps.SearchSpace(params)


def run_neps(task: Task, ledger: Ledger, seed: int, budget_trials: int, algorithm: str) -> None:
    """NePS's ``algorithm`` (hyperband, ifbo) through AskAndTell; a config asked again at a higher
    fidelity continues the checkpoint of the trial it names as its previous one."""
    import neps
    import torch

    random.seed(seed)
    np.random.seed(seed)  # NePS takes no seed: it draws from the global generators
    torch.manual_seed(seed)
    space = SearchSpace.from_spec(task.space)
    pipeline = neps_space(space, task.points)
    if algorithm == "ifbo":
        optimizer = neps.algorithms.ifbo(pipeline, surrogate_path=IFBO_WEIGHTS)
    else:
        optimizer = getattr(neps.algorithms, algorithm)(pipeline)
    ask_tell = neps.AskAndTell(optimizer)
    runs: dict[str, Chunks] = {}
    failed: set[Chunks] = set()  # a failed trial cannot be continued: NePS may still promote it (as its worst)
    with tempfile.TemporaryDirectory(prefix="bench-neps-") as scratch:
        try:
            for number in range(10**6):
                trial = ask_tell.ask()
                config = dict(trial.config)
                epoch = int(config.pop("epoch"))
                previous = trial.metadata.previous_trial_id
                run = runs.pop(previous, None) if previous else None
                run = run or Chunks(task, ledger, decode(config, space), number, seed, Path(scratch))
                value = None
                if run not in failed and epoch / task.points > run.reached:
                    value = run.advance(epoch / task.points)
                runs[trial.id] = run
                if value is None:
                    failed.add(run)
                    ask_tell.tell(trial, RuntimeError("the trial failed"))
                else:
                    ask_tell.tell(trial, {"objective_to_minimize": value, "cost": epoch / task.points})
        except BudgetSpent:
            pass


def ifbo_weights_missing() -> str | None:
    """Why NePS's ifbo cannot run here (its FT-PFN weights are downloaded at first use), or None."""
    from ifbo.download import WEIGHTS_FINAL_NAME

    found = list(IFBO_WEIGHTS.rglob(f"{WEIGHTS_FINAL_NAME('0.0.1')}*"))
    return None if found else f"the FT-PFN weights are not in {IFBO_WEIGHTS} (EVOBENCH_IFBO_WEIGHTS)"
