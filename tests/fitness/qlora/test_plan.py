"""``evo plan`` with the QLoRA fitness: the 7B example planned where there is neither a GPU nor the
hub, the default config on this CPU, a wall time from measured speeds, and bad genes refused."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evo.cli import main
from tests.conftest import ROOT
from tests.fitness.qlora.hubserver import FakeHub, closed_port

GPU_7B = ROOT / "experiments" / "gpu_7b.yaml"
DEFAULT = ROOT / "experiments" / "smollm2_pydoc.yaml"
CARDS = ["24 GB", "48 GB", "80 GB", "141 GB"]


def plan_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No GPU (so the output is the same on any machine), a hub home and an evo cache of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_HOME=str(tmp_path / "hf-home"), EVO_CACHE_DIR=str(tmp_path / "cache"), CUDA_VISIBLE_DEVICES="")
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A cache holding the default model's architecture, as after its first run: plans then skip parsing the GGUF."""
    from fitness.qlora.base.architecture import read_architecture
    from fitness.qlora.base.source import resolve_model
    from fitness.qlora.spec import QLoRASpec

    folder = tmp_path_factory.mktemp("plan-cache")
    read_architecture(resolve_model(QLoRASpec().model_settings), folder)
    return folder


def table(out: str) -> dict[str, list[str]]:
    """The memory table: each row's cells after the shape, by shape."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["shape", "peak"])
    rows = {}
    for line in lines[start + 1 :]:
        if not line.startswith("  ") or ": " in line:
            break
        shape, cells = re.match(r"\s+(.+?)\s{2,}(\d.*)$", line).groups()
        rows[shape] = cells.split()
    return rows


@pytest.mark.parametrize("hub", ["offline", "online"])
def test_the_7b_example_is_planned_without_a_gpu_and_without_the_hub(tmp_path, hub):
    """Offline with an unreachable endpoint; online against a hub that records what it is asked: nothing."""
    with FakeHub() as fake:
        if hub == "offline":
            env = plan_env(tmp_path, HF_HUB_OFFLINE="1", HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
        else:
            env = plan_env(tmp_path, HF_ENDPOINT=fake.url)
        done = subprocess.run(
            [sys.executable, "-m", "evo.cli", "plan", str(GPU_7B)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert fake.requests == []
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("trials: 77 at most (1 baseline + 12 initial + 8 generations x 8 children)")
    assert "training tokens: 262,144 a trial (budget.tokens 262,144), 20,185,088 in all" in out
    assert "mistralai/Mistral-7B-v0.1: its shape read from the config.json shipped with evo-qlora" in out
    assert "fitness.device cuda, and this machine has no GPU" in out
    assert not (tmp_path / "hf-home").exists() and not (tmp_path / "cache").exists()  # nothing fetched or written
    rows = table(out)
    assert len(rows) == 4 * 3 * 2 + 1  # micro-batch x sequence length x checkpointing, and the baseline
    for shape, cells in rows.items():
        micro = [None if c == "-" else int(c) for c in cells[2:]]
        assert len(micro) == len(CARDS), shape
        fitting = [m for m in micro if m is not None]
        assert fitting == sorted(fitting), f"{shape}: a larger GPU trains a smaller micro-batch"
    assert rows["8 x 1024"][2] == "-" and rows["8 x 1024, checkpointing"][2] != "-"  # checkpointing makes it fit
    misfits = [shape for shape, cells in rows.items() if cells[2] == "-"]
    assert f"would not fit even at micro-batch 1: 24 GB: {', '.join(misfits)}" in out
    assert "every shape trains (at some micro-batch) on: 48 GB, 80 GB, 141 GB" in out
    assert re.search(r"cohort: trials of the baseline's shape trained at once .*: 24 GB \d+, 48 GB \d+", out)
    assert "wall time: unknown" in out


def test_the_default_config_is_planned_on_this_cpu_and_timed_once_speeds_are_measured(cache, tmp_path, capsys):
    from fitness.qlora.base.model import device_kind
    from fitness.qlora.base.source import resolve_model
    from fitness.qlora.genes import TrialConfig
    from fitness.qlora.memory.calibration import Calibration
    from fitness.qlora.memory.footprint import TrialShape
    from fitness.qlora.spec import Device, QLoRASpec

    shutil.copytree(cache, tmp_path, dirs_exist_ok=True)  # a calibration of its own
    overrides = ["fitness.device=cpu", f"fitness.cache_dir={tmp_path}"]
    assert main(["plan", str(DEFAULT), *overrides]) == 0
    out = capsys.readouterr().out
    assert out.startswith("trials: 27 at most") and "4,096 a trial (budget.tokens 4,096), 110,592 in all" in out
    assert "model smollm2-135m: its shape read from its GGUF's header, no weights" in out
    assert list(table(out)) == ["4 x 128", "4 x 256", "8 x 128", "8 x 256", "baseline 4 x 128"]
    assert "wall time: unknown" in out and "no peak measured for this model on cpu:" in out

    spec = QLoRASpec.from_dict({"cache_dir": str(tmp_path)})
    calibration = Calibration.load(tmp_path, resolve_model(spec.model_settings).identity, device_kind(Device.CPU))
    shape = TrialShape(4, 128, 64, ("q_proj",), False, TrialConfig().optim, True, 4, True)
    calibration.record(
        [shape], estimated_mb=100.0, measured_mb=150.0, train_tokens_per_s=200.0, eval_tokens_per_s=800.0
    )
    assert main(["plan", str(DEFAULT), *overrides]) == 0
    out = capsys.readouterr().out
    # 27 trials x (4096 / 200 + 2048 / 800) s = 622 s
    assert "wall time: about 10 min on 1 device, from measured speeds" in out
    assert "estimates corrected by 1 cohorts measured on cpu:" in out


def test_a_memory_limit_is_the_runs_own_column(cache, capsys):
    argv = ["plan", str(DEFAULT), "fitness.device=cpu", f"fitness.cache_dir={cache}", "fitness.memory_limit_mb=2500"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.split()[:2] == ["shape", "peak"])
    assert header.split()[2:] == ["limit", "2500", "MB", *" ".join(CARDS).split()]
    rows = table(out)
    assert rows["4 x 128"][2] == "4"  # 1.7 GB: fits whole
    assert rows["8 x 256"][2] in ("1", "2", "4")  # 5.4 GB whole: cut into pieces to fit 2.5 GB


@pytest.mark.parametrize(
    "override, line",
    [
        ("search_space.r.choices=[0, 8]", "evo: error: search_space.r.choices: 0 is not accepted by the qlora"),
        (
            "fixed.learning_rte=0.1",
            "evo: error: fixed.learning_rte: the qlora fitness has no gene 'learning_rte' (did you mean",
        ),
        (
            "search_space.target_modules.choices=[attention, [q_proj, nope]]",
            "evo: error: search_space.target_modules.choices: ['q_proj', 'nope'] is not accepted by the qlora "
            "fitness: module 'nope' is not in the model",
        ),
        ("fitness.memory_limit_mb=-1", "evo: error: fitness.memory_limit_mb: must be a number > 0 or null, got -1"),
        ("fitness.model=/no/such/model", "evo: error: fitness.model: /no/such/model is neither"),
    ],
)
def test_a_plan_refuses_what_a_run_would_refuse_in_one_line(cache, capsys, override, line, tmp_path):
    """The same line as evo run's: plan makes the run's checks (tests/test_hostile_inputs.py: every input)."""
    argv = [str(DEFAULT), f"fitness.cache_dir={cache}", override]
    assert main(["plan", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1 and captured.err.startswith(line), captured.err
    assert main(["run", *argv, "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert capsys.readouterr().err == captured.err
