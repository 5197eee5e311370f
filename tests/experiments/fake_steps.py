"""Steps that really misbehave, for the harness's tests: ``python -m tests.experiments.fake_steps OPTIONS RECORD``.

What a step does is chosen by its record's file name (the step's name in the harness):
``fine`` passes, ``raising`` raises, ``sleepy`` records a finding and then sleeps past any
limit, ``leaving`` starts a child that would outlive it by ten minutes and passes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from evobench.gpu_check.record import Options, Record, StepStatus, step_main


def run(options: Options, record: Record) -> tuple[StepStatus, str]:
    kind = Path(sys.argv[2]).stem
    if kind == "raising":
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    if kind == "sleepy":
        record.update("measured the first half", first_half=42)
        time.sleep(600)
    if kind == "leaving":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        record.update(child_pid=child.pid)
    return StepStatus.PASSED, f"{kind} on {options.device}"


if __name__ == "__main__":
    step_main(run)
