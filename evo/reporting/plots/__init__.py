"""PNG plots of a run, written into ``RUN_DIR/plots/``.

Each figure function computes the series it draws, draws them, and returns them, so
tests can check that what is drawn is what the store holds.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evo.evaluation import RunInfo, RunObserver
from evo.reporting._rundata import RunData, load_run
from evo.storage import check_output
from evo.trial import ConfigError

FIGURE_SUFFIXES = (".png", ".pdf", ".svg")  # what matplotlib writes without extra packages


class NothingToPlot(ValueError):
    """The run has no finished trial yet; the message says so in one line."""


@dataclass
class PlotReport:
    written: dict[str, Path] = field(default_factory=dict)
    series: dict[str, dict[Any, Any]] = field(default_factory=dict)  # learning_curves keys by trial id
    skipped: dict[str, str] = field(default_factory=dict)  # figure name -> why it was not drawn


def plot_run(run_dir: Path | str, out_dir: Path | str | None = None, data: RunData | None = None) -> PlotReport:
    """Write every figure that the run's data supports; say why the others were skipped.

    The figures go to RUN_DIR/plots (this command's own folder of the run) or to ``out_dir``,
    which must not be a folder of another run (``evo.storage.check_output``)."""
    from evo.reporting.plots import _figures as figures  # matplotlib loads only when plotting

    own = Path(run_dir) / "plots"
    out = check_output(
        own if out_dir is None else out_dir, flag="--out", directory=True, owner=Path(run_dir), owns=("plots",)
    )
    data = data or load_run(run_dir)
    if not data.trials and data.baseline is None:
        raise NothingToPlot(f"{run_dir}: nothing to plot yet: no trial has finished")
    report = PlotReport()
    with drawing():
        for name, figure in figures.FIGURES.items():
            reason = figures.why_not(name, data)
            if reason:
                report.skipped[name] = reason
                continue
            path = check_output(out / f"{name}.png", flag="--out", owner=Path(run_dir), owns=("plots/*.png",))
            try:
                out.mkdir(parents=True, exist_ok=True)
                report.series[name] = figure(data, path)
            except OSError as exc:
                raise ConfigError(f"{path}: cannot write it ({exc.strerror or exc})") from None
            report.written[name] = path
    return report


@contextlib.contextmanager
def drawing() -> Iterator[None]:
    """Matplotlib's per-glyph warnings silenced: a run directory named in a script the font
    lacks would print one line per missing character, even under --quiet (the glyph is drawn
    as a box)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from")
        yield


class PlotRefresher(RunObserver):
    """Redraws RUN_DIR/plots during a run, so a long run can be watched.

    Refreshes after a generation when ``every_seconds`` have passed since the last
    refresh, and always at the end. Drawing reads the whole run, so it takes longer as
    the run grows (about a second at a few hundred trials): the pause also lasts at least
    ``PAUSE_FACTOR`` times the last drawing, which keeps plotting under a tenth of the
    driver's time however long the run.
    """

    PAUSE_FACTOR = 9.0

    def __init__(self, every_seconds: float = 30.0):
        self.every_seconds = every_seconds
        self.last = float("-inf")
        self.pause = every_seconds

    def start(self, run: RunInfo) -> None:
        self.run_dir = run.run_dir

    def generation_done(self, stats) -> None:
        import time

        if self.run_dir is not None and time.monotonic() - self.last >= self.pause:
            self._refresh(self.run_dir)

    def end(self) -> None:
        if self.run_dir is not None:
            self._refresh(self.run_dir)

    def _refresh(self, run_dir: Path) -> None:
        import time

        began = time.monotonic()
        try:
            plot_run(run_dir)
        except NothingToPlot:
            pass
        self.last = time.monotonic()
        self.pause = max(self.every_seconds, self.PAUSE_FACTOR * (self.last - began))
