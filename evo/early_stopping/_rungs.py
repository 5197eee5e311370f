"""Where trials are judged: rungs at ``min_fidelity * eta^k`` of the budget, and how many
of a generation reach each rung."""

from __future__ import annotations

import math
from collections.abc import Sequence


def rung_fractions(min_fidelity: float, eta: int) -> tuple[float, ...]:
    """``min_fidelity * eta^k`` below the whole budget, smallest first; a rung within 0.1% of
    the whole budget is the whole budget (1/9 given as 0.111)."""
    out, fraction = [], float(min_fidelity)
    while fraction < 0.999:
        out.append(fraction)
        fraction *= eta
    return tuple(out)


def rung_sizes(n: int, rungs: Sequence[float], eta: int) -> list[int]:
    """How many of ``n`` new individuals train at each rung (at most; failures promote fewer)."""
    sizes = [n]
    for _ in rungs[1:]:
        sizes.append(math.ceil(sizes[-1] / eta))
    return sizes
