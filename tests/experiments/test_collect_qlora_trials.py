"""experiments/collect_qlora_trials.py --quick on a tiny Llama: the lines and their fields,
resuming to a larger target, determinism by index, a torn last line, a refused mismatch."""

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from evobench.collect.plan import load_plan
from evobench.tiny import build_tiny_llama

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = runpy.run_path(str(ROOT / "experiments/collect_qlora_trials.py"))  # its parse_args and main, not run

FIELDS = {
    "kind",
    "collection",
    "index",
    "seed",
    "genome",
    "config",
    "status",
    "reason",
    "message",
    "val_perplexity",
    "train_loss_curve",
    "val_perplexity_curve",
    "train_tokens",
    "wall_seconds",
    "train_tokens_per_s",
    "peak_memory_mb",
    "fingerprint",
    "budget",
    "machine",
    "metrics",
}
SAME_BY_INDEX = ("seed", "genome", "config", "val_perplexity", "train_loss_curve", "val_perplexity_curve")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model, its cache, and one fitness (one worker start) shared by every run."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVO_CACHE_DIR", str(tmp_path_factory.mktemp("evo-cache")))  # the worker inherits it
        model = build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
        plan = load_plan(SCRIPT["parse_args"](["--quick", "--model", str(model)]))
        from fitness import make_fitness

        fitness = make_fitness(plan.fitness_spec)
        yield model, fitness
        fitness.close()


def run(setup, data_file, *extra):
    model, fitness = setup
    argv = ["--quick", "--model", str(model), "--data-file", str(data_file), *extra]
    return SCRIPT["main"](argv, fitness=fitness)


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_collects_resumes_and_recovers_deterministically(setup, tmp_path, capsys):
    data = tmp_path / "trials.jsonl"
    assert run(setup, data, "--target", "3") == 0
    header, *trials = rows(data)
    assert header["kind"] == "header" and header["eval_every"] == 2 and header["budget"] == {"steps": 4, "tokens": None}
    assert [t["index"] for t in trials] == [0, 1, 2]
    for t in trials:
        assert FIELDS <= set(t) and t["collection"] == header["collection"]
        assert t["fingerprint"] == header["fitness_fingerprint"]
        assert t["status"] == "complete" and t["reason"] is None and t["val_perplexity"] > 1
        assert [s for s, _ in t["train_loss_curve"]] == [1, 2, 3, 4]
        assert [s for s, _ in t["val_perplexity_curve"]] == [2, 4]
        assert t["val_perplexity_curve"][-1][1] == t["val_perplexity"]
        assert t["config"]["learning_rate"] == t["genome"]["learning_rate"] and t["config"]["optim"] == "adamw_torch"
        assert t["train_tokens"] > 0 and t["wall_seconds"] > 0 and t["peak_memory_mb"] > 0
        assert t["machine"]["cpu_count"] >= 1 and t["machine"]["device"].startswith("cpu") and "torch" in t["machine"]
    assert len({json.dumps(t["genome"]) for t in trials}) == 3
    assert "ETA" in capsys.readouterr().out

    before = data.read_bytes()
    assert run(setup, data, "--target", "5") == 0  # resumed: only 3 and 4 run
    assert data.read_bytes().startswith(before)
    first = rows(data)[1:]
    assert [t["index"] for t in first] == [0, 1, 2, 3, 4]

    other = tmp_path / "range.jsonl"  # another "machine" takes indices 3..4 in a fresh session
    assert run(setup, other, "--start", "3", "--target", "5") == 0
    for mine, theirs in zip(first[3:], rows(other)[1:]):
        assert {k: mine[k] for k in SAME_BY_INDEX} == {k: theirs[k] for k in SAME_BY_INDEX}

    data.write_bytes(data.read_bytes()[:-40])  # killed mid-write
    assert run(setup, data, "--target", "5") == 0
    recovered = rows(data)[1:]  # every line parses again
    assert [t["index"] for t in recovered] == [0, 1, 2, 3, 4]
    assert {k: recovered[4][k] for k in SAME_BY_INDEX} == {k: first[4][k] for k in SAME_BY_INDEX}


def test_a_file_of_another_config_is_refused_with_exit_2(setup, tmp_path):
    model, _ = setup
    data = tmp_path / "trials.jsonl"
    assert run(setup, data, "--target", "1") == 0
    kept = data.read_bytes()
    done = subprocess.run(  # the real command line: its own process, no worker needed to refuse
        [
            sys.executable,
            "experiments/collect_qlora_trials.py",
            "--quick",
            "--model",
            str(model),
            "--data-file",
            str(data),
            "--target",
            "2",
            "--sample-seed",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
    assert "another config" in done.stderr
    assert data.read_bytes() == kept
