"""``evo best --check``: an exported file loaded by the trainer's own parser and trained two steps,
in the trainer's own Python.

The trainers pin transformers versions of their own, so each usually lives in an environment
of its own: the Python that runs its CLI (``trl``, ``llamafactory-cli``, ``axolotl`` on PATH,
read from the script's first line), else this one, or the one ``--check PYTHON`` names.
``probe.py`` runs there, with nothing of evo-qlora imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fitness.qlora.export.facts import parse_version

PROBE = Path(__file__).with_name("probe.py")
CLI = {"hf": None, "trl": "trl", "llamafactory": "llamafactory-cli", "axolotl": "axolotl"}
IMPORT = {"hf": "transformers", "trl": "trl", "llamafactory": "llamafactory", "axolotl": "axolotl"}
INSTALL = {"hf": "transformers peft", "trl": "trl", "llamafactory": "llamafactory", "axolotl": "axolotl"}


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    line: str  # the verdict in one line
    output: str  # what the trainer printed


def trainer_python(fmt: str, given: str | None = None) -> Path | None:
    """The Python the trainer runs in: ``given``, its CLI's interpreter, or this one if it has the trainer."""
    if given:
        return Path(given)
    cli = CLI[fmt] and shutil.which(CLI[fmt] or "")
    if cli:
        with open(cli, "rb") as script:
            first = script.readline().decode(errors="replace").strip()
        if first.startswith("#!") and "env " not in first and Path(first[2:].split()[0]).is_file():
            return Path(first[2:].split()[0])
    if _has(Path(sys.executable), IMPORT[fmt]):
        return Path(sys.executable)
    return None


def _has(python: Path, module: str) -> bool:
    found = subprocess.run(
        [str(python), "-c", f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"],
        capture_output=True,
    )
    return found.returncode == 0


def transformers_of(python: Path) -> tuple[int, int] | None:
    """The transformers version installed for ``python`` (read from its metadata: nothing imported)."""
    found = subprocess.run(
        [str(python), "-c", "from importlib.metadata import version; print(version('transformers'))"],
        capture_output=True,
        text=True,
    )
    return parse_version(found.stdout.strip()) if found.returncode == 0 else None


def check(fmt: str, file: Path, python: str | None = None, *, env: dict[str, str] | None = None) -> CheckResult:
    """Parse ``file`` with the trainer's parser and train two steps, in a scratch folder."""
    found = trainer_python(fmt, python)
    if found is None or not found.is_file():
        where = f"{python} does not exist" if python else f"no {CLI[fmt] or 'python'} with {IMPORT[fmt]} found"
        return CheckResult(
            False, f"--check: {where}; install the trainer (pip install {INSTALL[fmt]}) or give --check PYTHON", ""
        )
    if not _has(found, IMPORT[fmt]):
        return CheckResult(False, f"--check: {found} has no {IMPORT[fmt]} (pip install {INSTALL[fmt]})", "")
    with tempfile.TemporaryDirectory(prefix="evo-check-") as work:
        run = subprocess.run(
            [str(found), str(PROBE), fmt, str(Path(file).resolve()), work],
            capture_output=True,
            text=True,
            cwd=work,
            env={**os.environ, **(env or {})},
        )
    output = run.stdout + run.stderr
    report = _report(run.stdout)
    if report is None:
        tail = (output.strip().splitlines() or ["no output"])[-1]
        return CheckResult(False, f"--check: {fmt} in {found} stopped without a verdict: {tail}", output)
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    if not report["ok"]:
        return CheckResult(
            False, f"--check: {fmt} failed to {report['stage']} the file ({versions}): {report['message']}", output
        )
    return CheckResult(True, f"--check: {fmt} {report['message']} ({versions}; {found})", output)


def _report(stdout: str) -> dict | None:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                found = json.loads(line)
            except ValueError:
                return None
            return found if isinstance(found, dict) and "ok" in found else None
    return None
