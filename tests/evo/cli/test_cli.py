import subprocess
import sys
from pathlib import Path

import yaml

from evo.cli import main

ROOT = Path(__file__).resolve().parents[3]


def test_synthetic_example_runs_then_status_and_best_export(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", str(ROOT / "experiments/synthetic.yaml"), "--out", str(run_dir)]) == 0
    captured = capsys.readouterr()
    assert "generation 10 done" in captured.err and "ETA" in captured.err
    assert "best (trial" in captured.out

    assert main(["status", str(run_dir)]) == 0
    status = capsys.readouterr().out
    assert "generations finished: 11/11" in status and "baseline val_perplexity" in status
    assert len([line for line in status.splitlines() if line.strip()[:2].strip().isdigit()]) == 11

    export = tmp_path / "best.yaml"
    assert main(["best", str(run_dir), "--export", str(export)]) == 0
    best = yaml.safe_load(export.read_text())
    assert set(best) >= {"training", "lora", "objectives"}
    assert best["training"]["learning_rate"] > 0 and best["lora"]["task_type"] == "CAUSAL_LM"
    assert isinstance(best["lora"]["target_modules"], (list, str))
    assert "model_max_length" in best["tokenizer"] and "other" not in best  # max_seq_length: what the tokenizer takes


def test_overrides_change_the_config(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = [
        "run",
        str(ROOT / "experiments/synthetic.yaml"),
        "--out",
        str(run_dir),
        "--quiet",
        "--no-plots",
        "evolution.generations=2",
        "--set",
        "evolution.population_size=4",
    ]
    assert main(argv) == 0
    stored = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert stored["evolution"]["generations"] == 2 and stored["evolution"]["population_size"] == 4
    assert stored["evolution"]["tournament_size"] == 3  # defaults written out


def test_console_script_help():
    for command in ([], ["run"], ["resume"], ["status"], ["best"]):
        out = subprocess.run(["evo", *command, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "usage: evo" in out.stdout


def test_best_of_a_run_without_completed_trials(synthetic_config, write_config, tmp_path, capsys):
    synthetic_config["fitness"]["failure_rate"] = 1.0
    synthetic_config["evolution"]["max_consecutive_failures"] = 3
    run_dir = tmp_path / "run"
    assert main(["run", str(write_config(synthetic_config)), "--out", str(run_dir), "--quiet", "--no-plots"]) == 3
    assert "3 evaluations in a row failed" in capsys.readouterr().err
    assert main(["best", str(run_dir)]) == 2
    assert "no trial has completed" in capsys.readouterr().err
    assert main(["status", str(run_dir)]) == 0


def test_layers_stay_apart():
    """evo/ never imports torch; fitness/ never imports DEAP."""
    code = (
        "import sys, evo.cli, evo.run._api, fitness, fitness.synthetic; "
        "assert 'torch' not in sys.modules, 'evo imported torch'; "
        "import importlib; [sys.modules.pop(m) for m in list(sys.modules) if m.startswith(('evo', 'deap', 'fitness'))]; "
        "import fitness.synthetic, fitness.qlora, evo.trial; assert 'deap' not in sys.modules, 'fitness imported deap'; "
        "assert 'torch' not in sys.modules, 'importing fitness.qlora loaded torch'"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
