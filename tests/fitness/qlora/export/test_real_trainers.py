"""Each export run by the real trainer, as a user would: two real QLoRA runs on SmolLM2 (the pydoc
corpus, and chat conversations), each format exported and handed to ``evo best --check`` in the
trainer's own venv (``trainer_envs.py``: made once, minutes each), which loads the file with the
trainer's own parser and trains two steps with its own CLI (TrainingArguments: the Trainer API).

Slow: the venvs (first time), then about a minute per trainer run on 2 CPU cores; axolotl's
start takes minutes. ``EVO_EXPORT_TRAINERS=axolotl,...`` runs only some of the environments.
"""

from __future__ import annotations

import os
import re

import pytest
import yaml

from evo.cli import main
from tests.fitness.qlora.chatdata import conversations, write_jsonl
from tests.fitness.qlora.export.trainer_envs import ENVS, ensure

pytestmark = pytest.mark.slow

# format -> the environments it runs in: transformers 4.57 and 5.x where the trainer supports both
RUNS_IN = {
    "hf": ("transformers-4.57", "transformers-5"),
    "trl": ("transformers-4.57", "transformers-5"),
    "llamafactory": ("llamafactory-4.57", "llamafactory-5"),
    "axolotl": ("axolotl",),  # 0.19 needs transformers >= 5.16
}
CASES = [(fmt, env, data) for fmt, envs in RUNS_IN.items() for env in envs for data in ("pydoc", "chat")]
WANTED = {e for e in os.environ.get("EVO_EXPORT_TRAINERS", "").split(",") if e}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A pydoc run and a chat run on SmolLM2 (the embedded GGUF, dequantized in the cache), a few steps each."""
    work = tmp_path_factory.mktemp("real-runs")
    chat = write_jsonl(work / "chat.jsonl", conversations(200))
    out = {}
    for name, data in (("pydoc", "pydoc"), ("chat", str(chat))):
        config = {
            "seed": 0,
            "fitness": {"type": "qlora", "data": data, "device": "cpu", "validation_tokens": 256, "eval_seq_length": 128},
            "budget": {"tokens": 2048},  # 4 steps of 4 x 128 tokens per trial
            "evolution": {"population_size": 2, "generations": 0},
            "search_space": {"learning_rate": {"type": "log_float", "low": 1e-4, "high": 3e-3}},
            "fixed": {"max_seq_length": 128, "per_device_train_batch_size": 4, "r": 8, "warmup_ratio": 0.25,
                      "lr_scheduler_type": "cosine"},
        }  # fmt: skip
        (work / f"{name}.yaml").write_text(yaml.safe_dump(config))
        assert main(["run", str(work / f"{name}.yaml"), "--out", str(work / name), "--quiet", "--no-plots"]) == 0
        out[name] = work / name
    return out


@pytest.mark.parametrize("fmt, env, data", CASES, ids=[f"{f}-{e}-{d}" for f, e, d in CASES])
def test_the_trainer_trains_two_steps_from_the_export_as_written(fmt, env, data, runs, tmp_path, capsys):
    if WANTED and env not in WANTED:
        pytest.skip(f"{env} not in EVO_EXPORT_TRAINERS")
    assert env in ENVS
    python = ensure(env)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: the model copy, the written dataset
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / f"{fmt}.yaml"
    code = main(["best", str(runs[data]), "--export", str(out), "--format", fmt, "--check", str(python)])
    verdict = capsys.readouterr().err.strip().splitlines()[-1]
    log = (tmp_path / f"{fmt}.yaml.check.log").read_text()
    losses = re.findall(r"['\"]?(?:train_)?loss['\"]?\s*[:=]\s*['\"]?([0-9.]+)", log)
    print(
        f"\n$ evo best {data}-run --export {out.name} --format {fmt} --check {python}\n{verdict}\nlosses: {losses[-3:]}"
    )
    assert code == 0, f"{verdict}\n{log[-3000:]}"
    assert verdict.startswith(f"--check: {fmt} parsed and trained 2 steps")
    cfg = yaml.safe_load(out.read_text())
    dtype = _compute_dtype(runs[data])
    if fmt == "trl":
        assert cfg["dtype"] == dtype
    if fmt == "hf":
        assert cfg["quantization"]["bnb_4bit_compute_dtype"] == dtype
    flags = cfg.get("training", cfg.get("train", cfg))
    assert flags["fp16"] is (dtype == "float16")
    if fmt == "axolotl":  # a CPU run: axolotl can't train bf16 there; its 4-bit matmuls still compute in the dtype
        assert cfg["bnb_config_kwargs"]["bnb_4bit_compute_dtype"] == dtype and cfg["bf16"] is False
    else:
        assert flags["bf16"] is (dtype == "bfloat16")


def _compute_dtype(run_dir) -> str:
    from evo.storage import RunStore

    with RunStore.open(run_dir) as store:
        trials = [t for t in store.trials() if t.ok]
    return trials[0].applied_config["bnb_4bit_compute_dtype"]
