"""experiments/benchmark_engine_growth.py --quick: every strategy runs and gets a row of costs."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # tens of seconds: run with -m slow
def test_quick_benchmark_prints_a_row_of_costs_per_strategy():
    done = subprocess.run(
        [sys.executable, "experiments/benchmark_engine_growth.py", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[2:] if line.strip()]
    assert len(rows) == 5
    for row in rows:
        costs, trials = [float(c) for c in row[-5:-3]], int(row[-2])
        assert all(math.isfinite(c) and c > 0 for c in costs), row
        assert trials >= 300
