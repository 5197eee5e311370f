"""The check's page and data: ``gpu_check.md`` (a table of the steps, then each step's findings)
and ``gpu_check.json`` (everything the steps recorded), in one directory."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from evobench.gpu_check.harness import StepResult
from evobench.gpu_check.record import Options

TITLES = {
    "environment": "1. The environment",
    "gpu_tests": "2. The gpu-marked tests",
    "cohorts": "3. Cohorts against one trial after another",
    "kill_resume": "4. evo run, killed once and resumed",
}


def table(results: list[StepResult]) -> list[str]:
    lines = ["| step | status | seconds (limit) | summary |", "|---|---|---|---|"]
    for r in results:
        summary = r.summary.replace("|", "/").replace("\n", " ")
        lines.append(f"| {r.name} | {r.status.value} | {r.seconds:.0f} ({r.limit_s:.0f}) | {summary} |")
    return lines


def page(results: list[StepResult], options: Options, started: str, wall_s: float) -> str:
    where = f"{options.device}{', --quick' if options.quick else ''}"
    lines = [
        "# GPU check",
        "",
        f"`python experiments/gpu_check.py` on {where}, started {started}, {wall_s:.0f} s in all.",
        "Written by the script; see docs/gpu.md for what each step checks.",
        "",
        *table(results),
    ]
    for r in results:
        lines += ["", f"## {TITLES.get(r.name, r.name)}", "", f"**{r.status.value}**: {r.summary}"]
        if r.markdown:
            lines += ["", *r.markdown]
        if r.status.value in ("failed", "timed out") and r.output_tail.strip():
            lines += ["", "Last output:", "", "```", *r.output_tail.strip().splitlines()[-25:], "```"]
    return "\n".join(lines) + "\n"


def write(out: Path, results: list[StepResult], options: Options, started: str, wall_s: float) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "started": started,
        "wall_seconds": round(wall_s, 1),
        "options": json.loads(options.to_json()),
        "steps": [r.as_dict() for r in results],
    }
    md, js = out / "gpu_check.md", out / "gpu_check.json"
    md.write_text(page(results, options, started, wall_s))
    js.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return md, js


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
