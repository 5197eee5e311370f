"""The way into a run: ``evolve``, ``start_run`` and ``resume_run`` (the Python API the CLI is
built on), the checks of a run against its fitness before anything is written, the executor
built for it, and ``evo plan``'s count of what a run would cost."""

from __future__ import annotations

from evo.run._api import fitness_and_executor, load_stored_config, resume_run, start_run, with_run_budget
from evo.run._files import check_config_file
from evo.run._plan import print_plan
from evo.run._preflight import check_before_run

__all__ = [
    "check_before_run",
    "check_config_file",
    "load_stored_config",
    "fitness_and_executor",
    "print_plan",
    "resume_run",
    "start_run",
    "with_run_budget",
]
