"""A hub model or dataset is resolved before a run starts, against a local fake hub (no network).

huggingface_hub reads HF_ENDPOINT, HF_HUB_OFFLINE and HF_HOME when it is imported, so each
case runs ``evo run`` (or a few lines of Python) in a subprocess with its own environment:
refused in seconds with one line naming the key, the cause and the fix, exit 2, and no
run directory; or resolved, and trained, from the fake hub and then offline from the cache.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.fitness.qlora.hubserver import FakeHub, Repo, closed_port

LLAMA_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
REFUSED_WITHIN_S = 30.0  # what a user waits, end to end, for a bad model or data set to be refused
CARD = {"configs": [{"config_name": "en", "default": True, "data_files": [{"split": "train", "path": "en/*"}]},
                    {"config_name": "fr", "data_files": [{"split": "train", "path": "fr/*"},
                                                         {"split": "test", "path": "fr/test/*"}]}]}  # fmt: skip


@dataclass(frozen=True)
class Refusal:
    code: int
    line: str
    seconds: float
    wrote: bool  # whether the run directory exists afterwards


def hub_env(tmp_path: Path, endpoint: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1", **extra)
    if endpoint is not None:
        env["HF_ENDPOINT"] = endpoint
    return env


def evo_run(tmp_path: Path, env: dict[str, str], **fitness: object) -> Refusal:
    config = {
        "seed": 0,
        "fitness": {"type": "qlora", "data": "pydoc", "device": "cpu", "cache_dir": str(tmp_path / "cache"), **fitness},
        "budget": {"steps": 2},
        "evolution": {"population_size": 2, "generations": 0},
        "search_space": {"r": {"type": "int", "choices": [4, 8]}},
        "fixed": {"max_seq_length": 64},
    }
    path, out = tmp_path / "run.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "evo.cli", "run", str(path), "--out", str(out), "--quiet", "--no-plots"]
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - start
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return Refusal(done.returncode, lines[0], seconds, out.exists())


def assert_refused(refusal: Refusal, *fragments: str) -> None:
    assert refusal.code == 2, refusal.line
    assert refusal.line.startswith("evo: error: fitness."), refusal.line
    for fragment in fragments:
        assert fragment in refusal.line, refusal.line
    assert refusal.seconds < REFUSED_WITHIN_S, refusal.seconds
    assert not refusal.wrote, "a refused run wrote its run directory"


def python(code: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture
def hub(tiny_model):
    with FakeHub() as fake:
        fake.add_model_folder("tiny/llama", tiny_model)
        fake.add_model_folder("tiny/gated", tiny_model, gated=True)
        fake.models["tiny/gguf-only"] = Repo({"model.Q4_0.gguf": b"GGUF", "README.md": b"# a GGUF repo"})
        fake.models["tiny/odd"] = Repo({"config.json": json.dumps({"model_type": "no-such-architecture"}).encode()})
        fake.datasets["tiny/chats"] = Repo({"README.md": b"---\n---\n", "en/train.jsonl": b"{}"}, card=CARD)
        fake.datasets["tiny/no-card"] = Repo({"train.jsonl": b"{}"})
        fake.datasets["tiny/gated-chats"] = Repo({"README.md": b""}, gated=True)
        yield fake


# -- a hub model ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model, extra, fragments",
    [
        ("nosuchorg/nosuchmodel-7b", {}, ("fitness.model:", "has no model nosuchorg/nosuchmodel-7b", "hf auth login")),
        ("tiny/gated", {}, ("fitness.model:", "tiny/gated is gated", "accept its terms", "/tiny/gated", "HF_TOKEN")),
        ("tiny/gated", {"HF_TOKEN": "hf_no_access"}, ("fitness.model:", "your token's account has no access")),
        ("tiny/gguf-only", {}, ("fitness.model:", "has no config.json", "fitness.gguf_file")),
        ("tiny/odd", {}, ("fitness.model: transformers", "cannot read the config of tiny/odd", "no-such-architecture")),
    ],
    ids=["not-found", "gated", "gated-with-a-token", "no-config", "unreadable-config"],
)
def test_a_hub_model_the_hub_refuses_is_one_line_in_seconds(hub, tmp_path, model, extra, fragments):
    refusal = evo_run(tmp_path, hub_env(tmp_path, hub.url, **extra), model=model)
    assert_refused(refusal, *fragments)
    assert any(f"/{model}/resolve/main/config.json" in r for r in hub.requests)  # the hub was asked


def test_a_gguf_file_the_hub_repo_lacks_names_gguf_file(hub, tmp_path):
    refusal = evo_run(tmp_path, hub_env(tmp_path, hub.url), model="tiny/gguf-only", gguf_file="model.Q8_0.gguf")
    assert_refused(refusal, "fitness.gguf_file: the hub model tiny/gguf-only has no file model.Q8_0.gguf")


def test_an_unreachable_hub_is_one_line_with_the_fix(tmp_path):
    refusal = evo_run(tmp_path, hub_env(tmp_path, f"http://127.0.0.1:{closed_port()}"), model="tiny/llama")
    assert_refused(
        refusal, "fitness.model: cannot reach the hub at http://127.0.0.1:", "ConnectError", "HF_HUB_OFFLINE=1"
    )


def test_a_hub_that_does_not_answer_times_out_in_seconds(tmp_path):
    with socket.socket() as silent:  # the kernel completes the handshake; nobody ever reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        refusal = evo_run(tmp_path, hub_env(tmp_path, endpoint), model="tiny/llama")
    assert_refused(refusal, "fitness.model: cannot reach the hub", "Timeout")
    assert refusal.seconds < 15, refusal.seconds  # one request with a short timeout, no retries


def test_offline_with_an_empty_cache_is_one_line(tmp_path):
    refusal = evo_run(tmp_path, hub_env(tmp_path, HF_HUB_OFFLINE="1"), model="mistralai/Mistral-7B-v0.1")
    assert_refused(refusal, "fitness.model: HF_HUB_OFFLINE is set", "has no copy of mistralai/Mistral-7B-v0.1")
    assert "hf download mistralai/Mistral-7B-v0.1" in refusal.line and str(tmp_path / "hf-home") in refusal.line


FROM_SPEC = """
import json
from evo.trial import Budget, Trial
from fitness.qlora import QLoRAFitness
fitness = QLoRAFitness.from_spec({spec!r})
genes = fitness.genes
print(json.dumps([genes["max_seq_length"].high, list(genes["target_modules"].names)]))
if {train}:
    result = fitness.evaluate(Trial(0, {{"max_seq_length": 64, "per_device_train_batch_size": 2}}, Budget(steps=2), 0))
    print(json.dumps([result.status.value, result.message]))
fitness.close()
"""


@pytest.mark.slow  # tens of seconds: run with -m slow
def test_a_hub_model_resolves_trains_and_then_trains_offline_from_the_cache(hub, tmp_path):
    spec = {"type": "qlora", "model": "tiny/llama", "device": "cpu", "cache_dir": str(tmp_path / "cache"),
            "validation_tokens": 256, "eval_seq_length": 64}  # fmt: skip
    online, offline = hub_env(tmp_path, hub.url), hub_env(tmp_path, hub.url, HF_HUB_OFFLINE="1")
    # the config alone, found online: the genes are the served model's
    assert json.loads(python(FROM_SPEC.format(spec=spec, train=False), online)) == [512, LLAMA_LINEAR]
    assert not any("model.safetensors" in r for r in hub.requests)  # no weights were fetched to resolve it
    # offline, the config is cached but not the weights: refused, saying so
    refusal = evo_run(tmp_path, offline, model="tiny/llama")
    assert_refused(refusal, "HF_HUB_OFFLINE is set", "holds the config of tiny/llama but not its weights")
    # a trial online: the worker loads the weights from the hub, as from_pretrained does
    status = python(FROM_SPEC.format(spec=spec, train=True), online).splitlines()[-1]
    assert json.loads(status)[0] == "complete", status
    assert any(r == "GET /tiny/llama/resolve/main/model.safetensors" for r in hub.requests)
    # now all cached: offline it resolves and trains, without asking the hub anything
    asked = len(hub.requests)
    out = python(FROM_SPEC.format(spec=spec, train=True), offline).splitlines()
    assert json.loads(out[0]) == [512, LLAMA_LINEAR] and json.loads(out[-1])[0] == "complete", out
    assert len(hub.requests) == asked, hub.requests[asked:]


# -- a hub dataset --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fitness, fragments",
    [
        (
            {"data": "hf:nosuchorg/nosuchdata"},
            (
                "fitness.data: cannot load the hub dataset nosuchorg/nosuchdata",
                "has no dataset nosuchorg/nosuchdata",
                "hf auth login",
            ),
        ),
        (
            {"data": "nosuchorg/nosuchdata"},
            ("fitness.data:", "has no dataset", "and no local path nosuchorg/nosuchdata"),
        ),
        ({"data": "hf:tiny/gated-chats"}, ("fitness.data:", "tiny/gated-chats is gated", "/datasets/tiny/gated-chats")),
        ({"validation_data": "hf:nosuchorg/held-out"}, ("fitness.validation_data:", "has no dataset")),
        (
            {"data": "hf:tiny/chats", "data_subset": "de"},
            ("fitness.data_subset: tiny/chats has no configuration 'de'", "(it has: en, fr)"),
        ),
        ({"data": "hf:tiny/chats", "data_split": "test"}, ("fitness.data_split: tiny/chats [en] has no split 'test'",)),
        ({"data": "hf:tiny/chats", "data_subset": "fr", "data_split": "dev"}, ("(it has: train, test)",)),
    ],
    ids=["not-found", "not-found-without-prefix", "gated", "validation-data", "subset", "split", "split-of-a-subset"],
)
def test_a_hub_dataset_the_hub_refuses_is_one_line_in_seconds(hub, tiny_model, tmp_path, fitness, fragments):
    refusal = evo_run(tmp_path, hub_env(tmp_path, hub.url), model=str(tiny_model), **fitness)
    assert_refused(refusal, *fragments)
    assert any(r.startswith("HEAD /datasets/") for r in hub.requests)


def test_an_unreachable_or_offline_hub_dataset_is_one_line(tiny_model, tmp_path):
    unreachable = hub_env(tmp_path, f"http://127.0.0.1:{closed_port()}")
    refusal = evo_run(tmp_path, unreachable, model=str(tiny_model), data="hf:tiny/chats")
    assert_refused(
        refusal, "fitness.data: cannot load the hub dataset tiny/chats: cannot reach the hub", "ConnectError"
    )
    refusal = evo_run(tmp_path, hub_env(tmp_path, HF_HUB_OFFLINE="1"), model=str(tiny_model), data="hf:tiny/chats")
    assert_refused(refusal, "fitness.data:", "HF_HUB_OFFLINE is set and the datasets cache", "has no copy")


def test_a_hub_dataset_the_hub_has_passes_the_check(hub, tmp_path):
    code = """
from fitness.qlora.base.hub import check_dataset
def check(repo, subset=None, split=None):
    check_dataset(repo, key="data", subset=subset, split=split, split_key="data_split", cached=False)
check("tiny/chats"); check("tiny/chats", split="train"); check("tiny/chats", "fr", "test")
check("tiny/no-card", "any", "any")  # no card: nothing to check its subset and split against
print("ok")
"""
    assert python(code, hub_env(tmp_path, hub.url)).strip() == "ok"
    assert (
        "GET /api/datasets/tiny/chats" in hub.requests
        and "HEAD /datasets/tiny/no-card/resolve/main/README.md" in hub.requests
    )
