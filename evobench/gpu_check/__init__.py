"""The GPU proof in one call: four steps, each in its own process under its own time limit.

1. ``environment``: python, torch, CUDA, driver, the GPU, and a 4-bit matmul through
   bitsandbytes' kernels on the device;
2. ``gpu_tests``: the tests marked ``gpu``;
3. ``cohorts``: K trials as one cohort against one after another (our loop and Trainer),
   at SmolLM2-135M's shape with random weights;
4. ``kill_resume``: a short ``evo run`` SIGKILLed once and resumed, against an uninterrupted one.

``experiments/gpu_check.py`` runs them and writes ``gpu_check.md`` and ``gpu_check.json``;
docs/gpu.md says how to run it on your own GPU and on a machine without network.
"""

from __future__ import annotations

from evobench.gpu_check.harness import Step, StepResult, run_steps
from evobench.gpu_check.record import Options, StepStatus

# Seconds. On one H200 the four limits add up to under 8 minutes; a CPU --quick run gets more
# room per step (a shared 2-core machine), though it takes a minute or two.
LIMITS = {"environment": 45, "gpu_tests": 150, "cohorts": 180, "kill_resume": 90}
QUICK_LIMITS = {"environment": 120, "gpu_tests": 180, "cohorts": 300, "kill_resume": 300}
BUDGET_S, QUICK_BUDGET_S = 480, 900
QUICK_KS = (1, 2, 4)


def steps(quick: bool, only: tuple[str, ...] = ()) -> list[Step]:
    limits = QUICK_LIMITS if quick else LIMITS
    return [Step(name, f"evobench.gpu_check.{name}", s) for name, s in limits.items() if not only or name in only]


__all__ = ["Options", "Step", "StepResult", "StepStatus", "run_steps", "steps", "LIMITS", "QUICK_LIMITS"]
