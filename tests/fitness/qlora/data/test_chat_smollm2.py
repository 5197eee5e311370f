"""End to end on chat data: 300 conversations, SmolLM2-135M-Instruct and its own chat template,
a small evolutionary run through the CLI, then the best config exported for each trainer."""

from __future__ import annotations

import math

import pytest
import yaml

from evo.cli import main
from evo.storage import RunStore
from evo.trial import TrialStatus
from tests.fitness.qlora.chatdata import conversations, write_jsonl

pytestmark = pytest.mark.slow


def test_a_chat_run_on_smollm2_end_to_end(tmp_path, capsys):
    data = write_jsonl(tmp_path / "chat.jsonl", conversations(300, seed=7))
    config = {
        "seed": 0,
        "fitness": {"type": "qlora", "data": str(data), "validation_tokens": 512, "eval_seq_length": 128},
        "budget": {"tokens": 2048},
        "evolution": {"population_size": 3, "generations": 1, "offspring_size": 2, "surrogate": "none"},
        "search_space": {
            "learning_rate": {"type": "log_float", "low": 5e-4, "high": 5e-3},
            "r": {"type": "int", "choices": [8, 16]},
        },
        "fixed": {"max_seq_length": 128, "per_device_train_batch_size": 4},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    assert main(["run", str(tmp_path / "run.yaml"), "--out", str(run), "--quiet", "--no-plots"]) == 0

    with RunStore.open(run) as store:
        trials = store.trials()
        environment = store.meta("environment")
    # complete, or stopped early by the default successive halving: none failed
    assert trials and all(t.status in (TrialStatus.COMPLETE, TrialStatus.PRUNED) for t in trials), [
        t.message for t in trials if not t.ok
    ]
    trials = [t for t in trials if t.ok]
    assert (
        environment["data_format"] == "chat"
        and "300 records; automatic split: 270 train, 30 validation" in (environment["data"])
    )
    best = min(t.values["val_perplexity"] for t in trials)
    assert math.isfinite(best) and 1.0 < best < 50.0  # an instruct model on short arithmetic answers

    adapter = str(run / "best" / "adapter")
    for fmt in ("hf", "trl", "llamafactory", "axolotl"):
        out = tmp_path / f"{fmt}.yaml"
        assert main(["best", str(run), "--export", str(out), "--format", fmt]) == 0
        assert adapter in out.read_text(), fmt
    trl = yaml.safe_load((tmp_path / "trl.yaml").read_text())
    assert trl["sft_config"]["assistant_only_loss"] is True and trl["sft_config"]["max_length"] == 128
