"""Early stopping: the rules that stop a trial whose validation curve runs worse than earlier
trials' (successive halving with Hyperband's brackets, the median rule) and the rung
arithmetic they share with the multi-fidelity strategy and ``evo plan``. Below the config
(its settings check their rungs here), so the rules take plain numbers, not settings."""

from __future__ import annotations

from evo.early_stopping._rules import GRID, HalvingRule, MedianRule, curve_of
from evo.early_stopping._rungs import rung_fractions, rung_sizes

__all__ = ["GRID", "HalvingRule", "MedianRule", "curve_of", "rung_fractions", "rung_sizes"]
