"""The README's commands are what CI runs, and its tour runs as shown.

A newcomer copies the README's two set-up commands and the tour's ``evo`` lines: CI must
run exactly those, and every tour line must work on the synthetic config.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

from evo.cli import main
from tests.evo.optuna.test_dashboard import dashboard, get, studies

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()


def section(heading: str) -> str:
    """The README's text under ``## heading``, up to the next ``## ``."""
    start = README.index(f"\n## {heading}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def bash_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readmes_two_commands_verbatim():
    main_job, tests = bash_blocks(section("Two commands, on a fresh machine"))
    lines = CI.splitlines()
    assert tests in lines, "the README's test command is not a line of .ci/run"
    (cut_down,) = [line for line in lines if line.startswith(main_job)]
    extra = shlex.split(cut_down[len(main_job) :])
    assert extra and all(re.fullmatch(r"[a-z_.]+=\S+|--quiet|--no-plots", arg) for arg in extra), extra


def test_ci_fails_when_any_step_of_a_readme_command_fails():
    """set -e ignores a failure before a line's last &&: a lint error would skip the tests and
    pass CI. Each README line in .ci/run is followed by its status check, and the check stops CI."""
    main_job, tests = bash_blocks(section("Two commands, on a fresh machine"))
    lines = CI.splitlines()
    for command in (main_job, tests):
        (at,) = [i for i, line in enumerate(lines) if line.startswith(command)]
        assert lines[at + 1].startswith("passed $? "), lines[at + 1]
    helper = CI[CI.index("passed() {") : CI.index("\n}\n", CI.index("passed() {")) + 3]
    script = f"set -euo pipefail\nstarted=$SECONDS\n{helper}\ntrue && false && true\npassed $? 'a step'\necho reached\n"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert done.returncode == 1 and "reached" not in done.stdout and "CI failed (exit 1)" in done.stdout


def test_ci_builds_its_own_clean_environment():
    assert "python3 -m venv" in CI and "--system-site-packages" not in CI
    assert "git clone" in CI  # a fresh clone: only what is committed


def test_every_command_of_the_tour_runs_on_the_synthetic_config(tmp_path, monkeypatch, capsys):
    commands = [line for block in bash_blocks(section("A short tour")) for line in block.splitlines()]
    assert len(commands) >= 9 and all(line.startswith("evo ") for line in commands), commands
    shown = {shlex.split(line)[1] for line in commands}
    assert shown >= {"run", "status", "best", "plot", "report", "resume", "compare", "dashboard"}
    assert any("--warm-start" in line for line in commands) and any("--export" in line for line in commands)
    (tmp_path / "experiments").mkdir()
    shutil.copy(ROOT / "experiments" / "synthetic.yaml", tmp_path / "experiments")
    monkeypatch.chdir(tmp_path)
    for line in commands:
        argv = shlex.split(line)[1:]
        if argv[0] == "dashboard":  # serves until Ctrl-C: started on a free port, its page asked for, stopped
            with dashboard(argv[1:], cwd=tmp_path) as url:
                assert get(url)[0] == 200 and {"demo", "warm"} <= set(studies(url))
            continue
        assert main(argv) == 0, f"{line}: {capsys.readouterr().err}"
    assert (tmp_path / "runs" / "demo" / "report.html").is_file()
    assert (tmp_path / "runs" / "compare.png").is_file() and (tmp_path / "runs" / "best.yaml").is_file()


def test_the_python_example_runs(tmp_path, monkeypatch, capsys):
    """The README's "From Python" block, as is, with a stand-in for the user's training."""
    (code,) = re.findall(r"```python\n(.*?)```", section("From Python"), flags=re.S)
    monkeypatch.chdir(tmp_path)
    namespace = {"train_and_validate": lambda learning_rate, r: abs(learning_rate - 1e-3) * 1e3 + r / 64}
    exec(compile(code, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.best_trials[0].values["val_loss"] < 1.0 and (tmp_path / "runs" / "mine" / "run.db").exists()
    assert "val_loss" in capsys.readouterr().out
