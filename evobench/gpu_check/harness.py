"""Each step in its own process under its own time limit; a slow one is killed, the rest still run.

A step that hangs (a CUDA call that never returns, a deadlock in a worker) must not take
the check's other answers with it: the step runs as ``python -m MODULE OPTIONS RECORD`` in
a session of its own, and at its limit the whole session (the step and any worker it
started) gets SIGKILL. Its record then holds what it had measured, marked timed out.
The limits of the steps still to come shrink to what is left of the check's own budget.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evobench.gpu_check.record import Options, StepStatus, load_record
from fitness.qlora.worker.lifeline import dying_with

KILL_GRACE_S = 5  # after the SIGKILL: the kernel reaps the session; waiting longer means something is stuck


@dataclass(frozen=True)
class Step:
    name: str
    module: str  # run as ``python -m module``; it calls ``record.step_main``
    limit_s: float  # the step's own time limit, in seconds


@dataclass
class StepResult:
    name: str
    status: StepStatus
    seconds: float
    limit_s: float
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    markdown: list[str] = field(default_factory=list)
    output_tail: str = ""  # the step's last lines of stdout and stderr

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "seconds": round(self.seconds, 1),
            "limit_s": round(self.limit_s, 1),
            "summary": self.summary,
            "details": self.details,
            "markdown": self.markdown,
            "output_tail": self.output_tail,
        }


def run_steps(steps: list[Step], options: Options, *, budget_s: float, echo=None) -> list[StepResult]:
    """Run ``steps`` in order; together they end within ``budget_s`` seconds (plus the kill grace)."""
    deadline = time.monotonic() + budget_s
    results = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        options_file = Path(scratch) / "options.json"
        options_file.write_text(options.to_json())
        for step in steps:
            limit = min(step.limit_s, deadline - time.monotonic())
            if limit < 1:
                results.append(StepResult(step.name, StepStatus.TIMED_OUT, 0.0, 0.0, "not started: the budget ran out"))
            else:
                results.append(_run_one(step, options_file, Path(scratch) / f"{step.name}.json", limit, options.root))
            if echo is not None:
                echo(results[-1])
    return results


def _run_one(step: Step, options_file: Path, record_file: Path, limit: float, root: str) -> StepResult:
    log = record_file.with_suffix(".log")
    start = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", step.module, str(options_file), str(record_file)],
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a kill reaches the workers it started
            preexec_fn=dying_with(os.getpid()),  # and the check killed (kill -9) takes the step with it
        )
        try:
            code = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            code = None
        finally:  # at its limit, at its end, or the check interrupted (Ctrl-C): the session goes
            _kill_session(proc)  # a worker the step left behind would hold the GPU for the next step
    seconds = time.monotonic() - start
    tail = log.read_bytes()[-4000:].decode(errors="replace")
    record = load_record(record_file) or {}
    details, markdown = record.get("details", {}), record.get("markdown", [])
    summary = record.get("summary", "")
    if code is None:
        what = f"killed at its {limit:.0f} s limit"
        return StepResult(step.name, StepStatus.TIMED_OUT, seconds, limit, f"{what}; {summary}" if summary else what,
                          details, markdown, tail)  # fmt: skip
    status = StepStatus(record.get("status", StepStatus.RUNNING.value))
    if code != 0 or status is StepStatus.RUNNING:
        last = tail.strip().splitlines()[-1:] or ["no output"]
        status, summary = StepStatus.FAILED, summary or f"exit code {code}: {last[0][:300]}"
    return StepResult(step.name, status, seconds, limit, summary, details, markdown, tail)


def _kill_session(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    try:
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
