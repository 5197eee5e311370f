"""The importance figure: which genes mattered (evo.reporting._importance, fANOVA), and which could be fixed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: plots are files, never windows
import matplotlib.pyplot as plt  # noqa: E402

from evo.reporting._importance import METHOD, TRUSTED_PER_GENE, importance  # noqa: E402
from evo.reporting._rundata import RunData  # noqa: E402

DPI = 110


def importance_figure(data: RunData, path: Path) -> dict[str, Any]:
    """Horizontal bars, most important on top; the genes that could be fixed in grey.
    ``evo.reporting._importance.why_none`` is asked first (in ``_figures.why_not``)."""
    found = importance(data.run_dir)
    names = list(found.scores)[::-1]
    scores = [found.scores[n] for n in names]
    fixable = found.fixable
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.6))
    ax.barh(names, scores, color=["#bbbbbb" if n in fixable else "#1f77b4" for n in names])
    ax.set_xlabel(f"importance for {found.objective} ({METHOD}, sums to 1)")
    title = f"What mattered: {found.trials} whole-budget trials"
    if not found.trusted:
        title += f" (a hint until about {found.genes * TRUSTED_PER_GENE})"
    ax.set_title(title, fontsize=10)
    if fixable:
        ax.text(0.99, 0.02, "grey: could be fixed at the best value", transform=ax.transAxes, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return {"scores": dict(found.scores), "trials": found.trials, "trusted": found.trusted, "fixable": fixable}
