"""`evo best RUN --export FILE --format F [--steps N | --epochs E] [--target-version X.Y] [--check [PYTHON]]`
on a real (tiny) chat run: what is written, what is refused, and the check run in a trainer's Python."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from evo.cli import main
from tests.fitness.qlora.chatdata import chat_model, conversations, write_jsonl


@pytest.fixture(scope="module")
def chat_run(tiny_model, tmp_path_factory):
    work = tmp_path_factory.mktemp("chat-run")
    config = {
        "seed": 0,
        "fitness": {
            "type": "qlora", "model": str(chat_model(tiny_model, work / "model")), "device": "cpu",
            "data": str(write_jsonl(work / "chat.jsonl", conversations(60))), "cache_dir": str(work / "cache"),
            "validation_tokens": 256, "eval_seq_length": 64,
        },
        "budget": {"steps": 3},
        "evolution": {"population_size": 2, "generations": 0},
        "search_space": {"learning_rate": {"type": "log_float", "low": 1e-4, "high": 1e-2}, "r": {"type": "int", "choices": [4, 8]}},
        "fixed": {"max_seq_length": 64, "warmup_ratio": 0.5, "lr_scheduler_type": "linear"},
    }  # fmt: skip
    (work / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(work / "run.yaml"), "--out", str(work / "run"), "--quiet", "--no-plots"]) == 0
    return work / "run"


def one_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not line.startswith("wrote ")]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("fmt", ["hf", "trl", "llamafactory", "axolotl"])
def test_evo_best_exports_each_format_with_the_adapter_path_and_its_dataset(fmt, chat_run, tmp_path):
    out = tmp_path / f"best-{fmt}.yaml"
    assert main(["best", str(chat_run), "--export", str(out), "--format", fmt]) == 0
    text = out.read_text()
    adapter = chat_run / "best" / "adapter"
    assert adapter.is_dir() and str(adapter.resolve()) in text.replace(str(chat_run), str(chat_run.resolve()))
    assert "trial" in text.splitlines()[0] and "max_steps 3: what each trial trained" in text
    records = [json.loads(line) for line in (tmp_path / f"best-{fmt}-data" / "train.jsonl").read_text().splitlines()]
    assert records and all(set(r) == {"messages"} for r in records)
    cfg = yaml.safe_load(text)
    if fmt == "hf":
        assert {"training", "lora", "quantization", "adapter_path", "model", "dataset"} <= set(cfg)
        assert cfg["training"]["warmup_steps"] == 2 and cfg["training"]["max_steps"] == 3  # ceil(0.5 * 3)
    elif fmt == "trl":
        assert cfg["assistant_only_loss"] is True and (tmp_path / f"best-{fmt}.chat_template.jinja").is_file()
    elif fmt == "llamafactory":
        assert "evo_best" in json.loads((tmp_path / "dataset_info.json").read_text())
    else:
        assert cfg["lora_qkv_kernel"] is False  # the run had no CUDA


def test_the_training_length_is_the_one_asked_for(chat_run, tmp_path):
    out = tmp_path / "long.yaml"
    assert main(["best", str(chat_run), "--export", str(out), "--format", "trl", "--steps", "1000"]) == 0
    cfg = yaml.safe_load(out.read_text())
    assert (cfg["max_steps"], cfg["warmup_steps"]) == (1000, 500)
    assert main(["best", str(chat_run), "--export", str(out), "--format", "axolotl", "--epochs", "3"]) == 0
    cfg = yaml.safe_load(out.read_text())
    assert (cfg["num_epochs"], cfg["warmup_ratio"]) == (3, 0.5) and "max_steps" not in cfg


def test_printed_hf_sections_have_no_key_that_belongs_to_no_class(chat_run, capsys):
    assert main(["best", str(chat_run)]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert "other" not in cfg and cfg["tokenizer"] == {"model_max_length": 64}
    assert cfg["training"]["bf16"] is (cfg["quantization"]["bnb_4bit_compute_dtype"] == "bfloat16")


def test_an_existing_dataset_info_keeps_its_other_entries(chat_run, tmp_path):
    (tmp_path / "dataset_info.json").write_text(json.dumps({"mine": {"file_name": "mine.json"}}))
    assert main(["best", str(chat_run), "--export", str(tmp_path / "lf.yaml"), "--format", "llamafactory"]) == 0
    assert set(json.loads((tmp_path / "dataset_info.json").read_text())) == {"mine", "evo_best"}


def test_no_file_of_the_run_directory_is_written_over(chat_run, capsys):
    config = chat_run / "best" / "adapter" / "adapter_config.json"
    before = config.read_bytes()
    assert main(["best", str(chat_run), "--export", str(config), "--format", "hf"]) == 2
    assert "of the run in" in one_line(capsys) and config.read_bytes() == before


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--format", "trl"], "--format trl: the file comes with its dataset written beside it: give --export FILE"),
        (["--check"], "--check: checks the exported file: give --export FILE"),
        (["--format", "trl", "--top", "2", "--export", "x.yaml"], "--format trl: writes one config, not --top 2"),
        (["--format", "tlr", "--export", "x.yaml"], "unknown trainer format 'tlr' (known: hf, trl, llamafactory, axolotl)"),
        (["--steps", "0", "--export", "x.yaml"], "--steps: must be positive"),
        (["--target-version", "newest", "--export", "x.yaml", "--format", "trl"], "--target-version: 'newest' is not"),
    ],
)  # fmt: skip
def test_bad_options_are_one_line_and_exit_2(argv, expected, chat_run, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["best", str(chat_run), *argv]) == 2
    assert expected in one_line(capsys)
    assert not (tmp_path / "x.yaml").exists()


def test_check_without_the_trainer_says_so_in_one_line_and_exits_2(chat_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no axolotl on PATH, and none in this Python
    out = tmp_path / "ax.yaml"
    assert main(["best", str(chat_run), "--export", str(out), "--format", "axolotl", "--check"]) == 2
    line = one_line(capsys)
    assert "--check: no axolotl with axolotl found" in line and "pip install axolotl" in line and out.is_file()
    assert main(["best", str(chat_run), "--export", str(out), "--format", "axolotl", "--check", "/no/python"]) == 2
    assert "--check: /no/python does not exist" in one_line(capsys)


def test_check_finds_the_trainers_python_from_its_cli_on_path(chat_run, tmp_path, capsys, monkeypatch):
    cli = tmp_path / "bin" / "axolotl"  # as pip installs it: a script whose first line names its venv's python
    cli.parent.mkdir()
    cli.write_text(f"#!{sys.executable}\nraise SystemExit('not run: only its interpreter is read')\n")
    cli.chmod(0o755)
    monkeypatch.setenv("PATH", str(cli.parent))
    out = tmp_path / "ax.yaml"
    assert main(["best", str(chat_run), "--export", str(out), "--format", "axolotl", "--check"]) == 2
    assert f"--check: {sys.executable} has no axolotl (pip install axolotl)" in one_line(capsys)


@pytest.mark.slow  # two trainer processes: a minute (test_real_trainers.py runs every trainer)
def test_check_trains_two_steps_in_the_trainers_python_and_fails_on_a_deprecated_key(chat_run, tmp_path, capsys):
    pytest.importorskip("trl")
    from fitness.qlora.export.facts import installed_transformers

    out = tmp_path / "hf.yaml"
    assert main(["best", str(chat_run), "--export", str(out), "--format", "hf", "--check", sys.executable]) == 0
    line = one_line(capsys)
    assert line.startswith("--check: hf parsed and trained 2 steps (transformers ") and sys.executable in line
    assert "hf Trainer: 2 steps" in (tmp_path / "hf.yaml.check.log").read_text()
    if installed_transformers() >= (5, 23):  # written for an older transformers: its name is deprecated here
        argv = ["--format", "trl", "--target-version", "5.22", "--check", sys.executable]
        assert main(["best", str(chat_run), "--export", str(tmp_path / "trl.yaml"), *argv]) == 2
        line = one_line(capsys)
        assert "--check: trl failed to parse the file" in line and "`gradient_checkpointing` is deprecated" in line
