"""Step 2: the tests marked ``gpu`` (``python -m pytest -m gpu -q``), each test's outcome and the summary.

Only the test files that hold a ``gpu`` mark are collected: a test module importing a
package this machine lacks (the benchmarks' optuna, ray) would otherwise stop the
collection before a single GPU test ran.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from evobench.gpu_check.record import Options, Record, StepStatus, step_main
from fitness.qlora.worker.lifeline import dying_with

MARK = "pytest.mark.gpu"


def marked_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in (root / "tests").rglob("test_*.py") if MARK in p.read_text())


def outcomes(junit: Path) -> list[dict[str, object]]:
    """name, outcome (passed, failed, error, skipped), seconds and the first line of any message."""
    out = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                outcome = {"failure": "failed"}.get(kind, kind)
                message = (found.get("message") or found.text or "").strip().splitlines()[:1]
                message = message[0][:300] if message else ""
                break
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        out.append({"test": name, "outcome": outcome, "seconds": float(case.get("time", 0)), "message": message})
    return out


def _tee(argv: list[str], root: Path) -> tuple[int, list[str]]:
    """Run pytest, echoing its output as it comes: a step killed at its limit still shows how far it got."""
    proc = subprocess.Popen(
        argv, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=dying_with(os.getpid())
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line.rstrip())
    return proc.wait(), [line for line in lines if line.strip()]


def run(options: Options, record: Record) -> tuple[StepStatus, str]:
    root = Path(options.root).resolve()
    files = marked_files(root)
    record.update(files=[str(f) for f in files])
    if not files:
        return StepStatus.FAILED, f"no test file under tests/ holds {MARK}"
    with tempfile.TemporaryDirectory() as scratch:
        junit = Path(scratch) / "junit.xml"
        argv = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
        start = time.perf_counter()
        code, lines = _tee([*argv, *map(str, files)], root)
        seconds = time.perf_counter() - start
        cases = outcomes(junit) if junit.is_file() else []
    summary_line = lines[-1].strip("= ") if lines else f"pytest exit code {code}"
    record.update(exit_code=code, pytest_summary=summary_line, tests=cases, output_tail=lines[-40:])
    record.markdown = [
        f"`python -m pytest -m gpu -q {' '.join(map(str, files))}`: {summary_line} ({seconds:.0f} s)",
        "",
        "| test | outcome | seconds | message |",
        "|---|---|---|---|",
        *(
            f"| {c['test']} | {c['outcome']} | {c['seconds']:.1f} | {str(c['message']).replace('|', '/')} |"
            for c in cases
        ),
    ]
    counts = {kind: sum(c["outcome"] == kind for c in cases) for kind in ("passed", "failed", "error", "skipped")}
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) or summary_line
    if code != 0:
        return StepStatus.FAILED, f"{summary} (pytest exit code {code})"
    if counts["passed"] == 0:
        return StepStatus.SKIPPED, f"{summary}: no CUDA device here" if counts["skipped"] else summary
    return StepStatus.PASSED, summary


if __name__ == "__main__":
    step_main(run)
