"""experiments/gpu_wheels.py: what a GPU machine without network lacks, and the 64 MiB rule, on fake files."""

from __future__ import annotations

import runpy
import subprocess
from pathlib import Path

import pytest

from evobench.gpu_check import wheels

ROOT = Path(__file__).resolve().parents[2]
MIB = 2**20


def sized(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.truncate(size)  # sparse: the size counts, the disk holds nothing
    return path


@pytest.fixture
def repo(tmp_path) -> Path:
    """A checkout: 3 MiB tracked, 1 MiB untracked, 500 MiB that git ignores (a venv, a build)."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("/venv/\n/.whl/\n")
    sized(tmp_path / "code.py", 3 * MIB)
    subprocess.run(["git", "add", ".gitignore", "code.py"], cwd=tmp_path, check=True)
    sized(tmp_path / "notes.md", 1 * MIB)
    sized(tmp_path / "venv" / "torch.so", 500 * MIB)
    return tmp_path


def test_the_tree_is_what_git_would_carry(repo):
    wheel = sized(repo / ".whl" / "deap-1.4.4-py3-none-any.whl", 2 * MIB)
    tree, wheel_bytes = wheels.carried_bytes(repo, [wheel])
    assert tree == 4 * MIB + len((repo / ".gitignore").read_bytes()) and wheel_bytes == 2 * MIB


def test_a_wheel_git_does_not_ignore_is_counted_once(repo):
    wheel = sized(repo / "wheels" / "deap-1.4.4-py3-none-any.whl", 2 * MIB)  # untracked, not ignored
    tree, wheel_bytes = wheels.carried_bytes(repo, [wheel])
    assert wheel_bytes == 2 * MIB and tree < 5 * MIB


def test_the_limit_is_inclusive_and_a_byte_over_is_one_line():
    assert wheels.too_large(60 * MIB, 4 * MIB) is None
    problem = wheels.too_large(60 * MIB, 4 * MIB + 1)
    assert problem is not None and "\n" not in problem and "do not fit in 64 MiB" in problem


def test_what_to_carry_is_what_the_gpu_machine_lacks():
    pins = dict(wheels.to_carry("3.12"))
    assert {"bitsandbytes", "deap", "gguf", "moocore", "cffi"} <= set(pins)  # deap imports moocore, moocore cffi
    assert not {"torch", "numpy", "transformers", "pyyaml", "packaging"} & set(pins)
    assert all(version[0].isdigit() for version in pins.values())


def fake_download(sizes: dict[str, int]):
    def download(pins, out, python_version):
        assert python_version == "3.12"
        for name, version in pins:
            sized(out / f"{name.replace('-', '_')}-{version}-py3-none-any.whl", sizes.get(name, 100_000))

    return download


def test_the_script_passes_when_the_wheels_fit(repo, capsys):
    main = runpy.run_path(str(ROOT / "experiments" / "gpu_wheels.py"))["main"]
    assert main(["--out", ".whl"], download=fake_download({"bitsandbytes": 43 * MIB}), root=repo) == 0
    assert "fits in 64 MiB" in capsys.readouterr().out


def test_the_script_fails_with_one_line_when_they_do_not(repo, capsys):
    main = runpy.run_path(str(ROOT / "experiments" / "gpu_wheels.py"))["main"]
    sized(repo / ".whl" / "bitsandbytes-0.40.0-py3-none-any.whl", 30 * MIB)  # a stale version: removed first
    assert main(["--out", ".whl"], download=fake_download({"bitsandbytes": 61 * MIB}), root=repo) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "do not fit in 64 MiB" in err
    assert not (repo / ".whl" / "bitsandbytes-0.40.0-py3-none-any.whl").exists()


def test_check_only_downloads_nothing_and_names_what_is_missing(repo, capsys):
    main = runpy.run_path(str(ROOT / "experiments" / "gpu_wheels.py"))["main"]

    def no_download(*_):
        raise AssertionError("--check-only downloaded")

    sized(repo / ".whl" / "deap-1.4.4-py3-none-any.whl", MIB)
    assert main(["--out", ".whl", "--check-only"], download=no_download, root=repo) == 1
    err = capsys.readouterr().err
    assert "no wheel in" in err and "bitsandbytes" in err and "deap," not in err
