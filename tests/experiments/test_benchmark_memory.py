"""experiments/benchmark_memory.py --quick: the tiny Llama's three cases, the table and its files, so
the script cannot rot. Its verdict is the script's exit code; the full table is in docs/memory.md."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from evobench.memory import GOAL_PCT, QUICK_CASES

ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_benchmark_measures_each_case_and_writes_its_table(tmp_path):
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    done = subprocess.run(
        [sys.executable, "experiments/benchmark_memory.py", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    record = json.loads((tmp_path / "memory_quick.json").read_text())
    measured = record["measurements"]
    assert [m["case"] for m in measured] == [case.name for case in QUICK_CASES]
    for m in measured:
        assert m["model"] == "tiny-llama" and m["estimated_mb"] > 0 and m["measured_mb"] > 0, m
        assert math.isclose(m["error_pct"], 100 * (m["estimated_mb"] - m["measured_mb"]) / m["measured_mb"])
    missed = [m for m in measured if abs(m["error_pct"]) > GOAL_PCT]
    assert done.returncode == (1 if missed else 0)  # the exit code is the verdict
    text = (tmp_path / "memory_quick.md").read_text()
    assert "`python experiments/benchmark_memory.py --quick`" in text and "| model | shape | estimated MB |" in text
    assert text in done.stdout  # printed as written
    verdict = text.strip().splitlines()[-1]
    if missed:
        assert verdict.startswith(f"{len(missed)} of 3 cases off by more than {GOAL_PCT:.0f}%"), verdict
    else:
        assert verdict == f"every case within {GOAL_PCT:.0f}%"
