"""Run or resume a run in this process and SIGKILL it at its K-th kill point (test helper).

    python -m tests.evo.killpoints RUN_DIR K CONFIG.json

As a user would: the run starts when RUN_DIR holds none yet (also when its first
driver died while creating it), and is resumed otherwise. A kill point is any moment
a driver can die at, counted in the order this process passes them: inside breeding
(each mutation of a child, each screening of candidates), inside a store write (after
its statements ran, before they commit), inside a trial (after the fitness computed
its result, before the driver got it), and between a generation's last evaluation and
its record. At the K-th one the process kills itself with SIGKILL, as the kernel's
OOM killer or a pulled plug would. K = 0 never kills; the process then prints how
many kill points it passed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path

from evo.search import _breeding as breeding
from evo.storage import RunStore, StoreError, check_new_run
from evo.strategies._context import RunContext
from fitness.synthetic import SyntheticFitness

passed = 0
kill_at = 0
_counting = threading.Lock()  # trials on several devices pass their kill points from their own threads


def point() -> None:
    global passed
    with _counting:
        passed += 1
        if passed == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


def at_entry(owner: object, name: str) -> None:
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        point()
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def before_return(owner: object, name: str) -> None:
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        point()
        return result

    setattr(owner, name, wrapper)


def inside_transactions() -> None:
    original = RunStore._transaction

    @contextlib.contextmanager
    def transaction(self):
        with original(self) as db:
            yield db
            point()  # the statements ran; the commit has not happened

    RunStore._transaction = transaction


def main() -> None:
    global kill_at
    run_dir, kill_at = Path(sys.argv[1]), int(sys.argv[2])
    at_entry(breeding, "mutate")  # every mutation of a bred child
    at_entry(breeding, "screen")  # the surrogate ranking candidate children
    before_return(SyntheticFitness, "evaluate")
    at_entry(RunContext, "record")
    inside_transactions()

    from evo.config import parse_config
    from evo.run import _api
    from fitness import make_fitness

    try:
        check_new_run(run_dir)
        fresh = True
    except StoreError:
        fresh = False
    if fresh:
        config = parse_config(json.loads(Path(sys.argv[3]).read_text()))
        _api.start_run(config, make_fitness(config.fitness), run_dir)
    else:
        with RunStore.open(run_dir) as store:
            config = _api.load_stored_config(store)
        _api.resume_run(run_dir, make_fitness(config.fitness))
    print(json.dumps({"kill_points": passed}))


if __name__ == "__main__":
    main()
