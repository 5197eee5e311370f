"""Step 4: a short ``evo run`` end to end, SIGKILLed once mid-run and resumed, against an uninterrupted run.

The run is experiments/smollm2_pydoc.yaml cut down to the tiny Llama and a dozen short
trials: steady state, ``cohort: auto`` (on CUDA, cohorts of up to 32), float32 compute so
that both runs compute the same numbers. The uninterrupted run goes first; the second
driver is SIGKILLed (with its worker: the whole session) at the first moment when at
least one trial is committed and others are still to come, once half the first run's
trials are committed or half its wall time has passed. ``evo resume`` then finishes it.
Both must hold the same individuals, the same trials (the killed ones aside) and the
same best; values are compared to 1e-5, and whether they are bit-identical is reported.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from evo.storage import BASELINE_GENERATION, RunStore
from evobench.gpu_check.models import tiny_llama
from evobench.gpu_check.record import Options, Record, StepStatus, step_main
from evobench.paths import run_config
from fitness.qlora.worker.lifeline import dying_with

TOLERANCE = 1e-5
POLL_S = 0.2
EVOLUTION = {"mode": "steady_state", "population_size": 4, "generations": 2, "offspring_size": 4, "immigrants": 1}


def run_file(options: Options, model: Path, scratch: Path) -> Path:
    config = run_config("smollm2_pydoc")
    config["fitness"].update(
        model=str(model), device=options.device, cohort="auto", cache_dir=str(scratch / "cache"),
        validation_tokens=256, eval_seq_length=64, trial_timeout=120,
    )  # fmt: skip
    config["fixed"]["bnb_4bit_compute_dtype"] = "float32"
    config["budget"] = {"tokens": 2048}
    config["evolution"] = {k: v for k, v in config["evolution"].items() if k != "strategy"} | EVOLUTION
    path = scratch / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def evo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "evo.cli", *args, "--quiet", "--no-plots"]


def snapshot(run_dir: Path) -> dict[str, Any]:
    """What a run decided, independent of row ids (killed rows take ids too); values apart."""
    with RunStore.open(run_dir) as store:
        trials = {t.id: t for t in store.trials()}

        def key(trial_id: int | None):
            t = trials[trial_id] if trial_id is not None else None
            return None if t is None else [t.generation, t.config, t.fidelity, t.status.value, t.seed]

        alive = [t for t in trials.values() if t.reason is None or t.reason.value != "killed"]
        individuals = store.individuals()
        best = None
        for rec in individuals:
            t = trials.get(rec.trial_id) if rec.trial_id is not None else None
            if rec.generation == BASELINE_GENERATION or t is None or not t.ok or not t.full:
                continue
            if best is None or t.values["val_perplexity"] < best[1]:
                best = (t.config, t.values["val_perplexity"])
        return {
            "individuals": [
                [i.id, i.generation, i.slot, i.genome, i.origin, i.parents, key(i.trial_id)] for i in individuals
            ],  # fmt: skip
            "trials": sorted(((key(t.id), t.values) for t in alive), key=lambda kv: json.dumps(kv[0], sort_keys=True)),
            "killed": len(trials) - len(alive),
            "best": best,
        }


def committed(run_dir: Path) -> int | None:
    """Trials the driver has finished so far (None while the run directory is not readable yet)."""
    try:
        with RunStore.open(run_dir) as store:
            return sum(1 for t in store.trials() if t.finished_at is not None)
    except Exception:  # not created yet, or caught mid-creation: look again
        return None


def kill_midway(argv: list[str], run_dir: Path, root: str, total: int, wall: float) -> dict[str, Any]:
    proc = subprocess.Popen(  # a session of its own, for the killpg below; dying with this step all the same
        argv,
        cwd=root,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=dying_with(os.getpid()),
    )
    start = time.monotonic()
    while proc.poll() is None:
        done, elapsed = committed(run_dir), time.monotonic() - start
        if done is not None and 1 <= done < total and (done >= total / 2 or elapsed >= wall / 2):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"killed_after_s": round(elapsed, 1), "committed_when_killed": done, "returncode": proc.returncode}
        time.sleep(POLL_S)
    output = proc.stdout.read().decode(errors="replace")[-1500:] if proc.stdout else ""
    return {"returncode": proc.returncode, "never_killed": True, "output": output}


def compare(whole: dict[str, Any], resumed: dict[str, Any]) -> tuple[bool, bool, str]:
    """(equal to TOLERANCE, bit-identical, what differs first)."""
    for part in ("individuals", "best"):
        if part == "best" and (whole["best"] is None or resumed["best"] is None):
            if whole["best"] != resumed["best"]:
                return False, False, "best"
            continue
        a, b = (whole[part], resumed[part]) if part != "best" else (whole["best"][0], resumed["best"][0])
        if a != b:
            return False, False, part
    if [k for k, _ in whole["trials"]] != [k for k, _ in resumed["trials"]]:
        return False, False, "trials"
    bits = all(va == vb for (_, va), (_, vb) in zip(whole["trials"], resumed["trials"]))
    for (k, va), (_, vb) in zip(whole["trials"], resumed["trials"]):
        if va.keys() != vb.keys() or any(not math.isclose(va[n], vb[n], rel_tol=TOLERANCE) for n in va):
            return False, False, f"values of trial {k}"
    return True, bits, ""


def run(options: Options, record: Record) -> tuple[StepStatus, str]:
    with tempfile.TemporaryDirectory(prefix="gpu-check-run-") as scratch_dir:
        scratch = Path(scratch_dir)
        config = run_file(options, tiny_llama(scratch / "tiny"), scratch)
        start = time.monotonic()
        done = subprocess.run(evo_command("run", str(config), "--out", str(scratch / "whole")), cwd=options.root,
                              capture_output=True, text=True)  # fmt: skip
        wall = time.monotonic() - start
        if done.returncode != 0:
            return StepStatus.FAILED, f"the uninterrupted run failed ({done.returncode}): {done.stderr[-300:]}"
        whole = snapshot(scratch / "whole")
        total = len(whole["trials"])
        record.update(f"uninterrupted: {total} trials in {wall:.0f} s", whole_seconds=round(wall, 1), trials=total)
        argv = evo_command("run", str(config), "--out", str(scratch / "killed"))
        kill = kill_midway(argv, scratch / "killed", options.root, total, wall)
        record.update(kill=kill)
        if kill.get("never_killed"):
            return StepStatus.FAILED, f"the run ended (exit {kill['returncode']}) before it could be killed"
        start = time.monotonic()
        resumed_run = subprocess.run(evo_command("resume", str(scratch / "killed")), cwd=options.root,
                                     capture_output=True, text=True)  # fmt: skip
        record.update(resume_seconds=round(time.monotonic() - start, 1), resume_returncode=resumed_run.returncode)
        if resumed_run.returncode != 0:
            return StepStatus.FAILED, f"evo resume failed ({resumed_run.returncode}): {resumed_run.stderr[-300:]}"
        resumed = snapshot(scratch / "killed")
    equal, bits, differs = compare(whole, resumed)
    best = f"best val ppl {whole['best'][1]:.4f}" if whole["best"] else "no best"
    record.update(equal=equal, bit_identical=bits, first_difference=differs, killed_trials=resumed["killed"], best=best)
    where = f"SIGKILL at {kill['killed_after_s']} s with {kill['committed_when_killed']} of {total} trials committed"
    record.markdown = [
        f"`evo run` (steady state, `cohort: auto`, float32) on {options.device}: {total} trials in {wall:.0f} s "
        f"uninterrupted; {where} (exit {kill['returncode']}); `evo resume` re-ran {resumed['killed']} killed "
        f"trial(s). Same individuals, trials and best: {'yes' if equal else 'no, ' + differs}; values "
        f"{'bit-identical' if bits else f'equal to {TOLERANCE:g}' if equal else 'differ'}; {best}.",
    ]
    summary = f"{where}; resumed run {'equals' if equal else 'differs from'} the uninterrupted one"
    summary += f" ({'bit-identical' if bits else differs or f'to {TOLERANCE:g}'}); {best}"
    if kill["returncode"] != -signal.SIGKILL or not equal:
        return StepStatus.FAILED, summary
    return StepStatus.PASSED, summary


if __name__ == "__main__":
    step_main(run)
