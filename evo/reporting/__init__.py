"""What a run tells its user: the live progress line, trackers (TensorBoard, MLflow, W&B), the
status table, the best configs, the HTML report, which genes mattered (fANOVA), and the
figures in ``plots/``. Everything here reads the store; nothing here changes a run."""

from __future__ import annotations

from evo.reporting._importance import importance
from evo.reporting._progress import TerminalProgress
from evo.reporting._report import write_report
from evo.reporting._status import best_entries, best_lines, status_lines, stored_best_lines
from evo.reporting._trackers import make_trackers

__all__ = [
    "TerminalProgress",
    "best_entries",
    "best_lines",
    "importance",
    "make_trackers",
    "status_lines",
    "stored_best_lines",
    "write_report",
]
