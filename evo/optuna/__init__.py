"""The bridge to Optuna: every finished trial mirrored into the run's ``optuna.journal`` as the
run goes (Optuna's format, so Optuna's tools read it), ``evo dashboard`` (optuna-dashboard over
one or several runs' journals) and ``evo export-optuna`` (a finished run copied into any Optuna
storage). Optuna is imported lazily: it is an optional extra, never needed to run."""

from __future__ import annotations

from evo.optuna._dashboard import HOST, PORT, serve
from evo.optuna._export import export_run
from evo.optuna._mirror import EXTRA, check_report_to, frozen_trial, journal_path, mirror_for, repair, stored_space

__all__ = [
    "EXTRA",
    "HOST",
    "PORT",
    "check_report_to",
    "export_run",
    "frozen_trial",
    "journal_path",
    "mirror_for",
    "repair",
    "serve",
    "stored_space",
]
