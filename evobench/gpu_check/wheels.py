"""The wheels a GPU machine without network needs, and the rule that they travel with the tree in 64 MiB.

A lent GPU machine has torch, transformers, peft, accelerate, numpy, scipy, pyyaml,
matplotlib, safetensors, tokenizers and pytest (``DEVICE_HAS``), but not bitsandbytes,
deap or gguf (``ROOTS``). What to carry is everything those three need at run time,
read from the installed metadata here, less everything the machine's own packages need:
deap 1.4 imports moocore, which imports cffi and platformdirs, so ``import evo`` needs
them too. Each is pinned to the version installed here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOTS = ("bitsandbytes", "deap", "gguf")
DEVICE_HAS = (
    "torch", "transformers", "peft", "accelerate", "numpy", "scipy", "pyyaml", "matplotlib", "safetensors",
    "tokenizers", "pytest",
)  # fmt: skip
LIMIT_BYTES = 64 * 2**20  # what may travel with the working tree to a lent machine
PLATFORMS = (
    "manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
    "manylinux2014_x86_64", "manylinux1_x86_64",
)  # fmt: skip


def _name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _applies(requirement: str, python_version: str) -> bool:
    """Whether a requirement holds on Linux x86_64 under ``python_version``, with no extra asked for."""
    if ";" not in requirement:
        return True
    from packaging.markers import Marker

    marker = Marker(requirement.split(";", 1)[1])
    env = {"python_version": python_version, "python_full_version": f"{python_version}.0", "extra": "",
           "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"}  # fmt: skip
    return marker.evaluate(env)


def closure(roots: tuple[str, ...], python_version: str) -> set[str]:
    """``roots`` and everything they require at run time, transitively, as installed here."""
    seen: set[str] = set()
    todo = [_name(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [_name(r) for r in requires if _applies(r, python_version)]
    return seen


def to_carry(python_version: str = "3.12") -> list[tuple[str, str]]:
    """(distribution, installed version) of each package the GPU machine lacks, sorted."""
    names = closure(ROOTS, python_version) - closure(DEVICE_HAS, python_version)
    pins = []
    for name in sorted(names):
        try:
            pins.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError as exc:
            raise SystemExit(f"gpu_wheels: {name} is needed but not installed here: pip install {name}") from exc
    return pins


def pip_download(pins: list[tuple[str, str]], out: Path, python_version: str) -> None:
    """Binary wheels only, no dependencies (the pins are the dependencies), for CPython on manylinux x86_64."""
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--python-version", python_version, "--implementation", "cp"]  # fmt: skip
    for platform in PLATFORMS:
        argv += ["--platform", platform]
    argv += ["-d", str(out), *(f"{name}=={version}" for name, version in pins)]
    subprocess.run(argv, check=True)


def tree_files(root: Path) -> list[Path]:
    """What travels as the working tree: tracked files that exist, and untracked files git does not ignore."""
    listed = []
    for args in (["ls-files", "-z"], ["ls-files", "-z", "--others", "--exclude-standard"]):
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, check=True)
        listed += [root / name for name in done.stdout.decode().split("\0") if name]
    return [p for p in dict.fromkeys(listed) if p.is_file()]


def carried_bytes(root: Path, wheels: list[Path]) -> tuple[int, int]:
    """(the tree's bytes, the wheels' bytes); a wheel git does not ignore is counted once, as a wheel."""
    wheel_set = {w.resolve() for w in wheels}
    tree = sum(p.stat().st_size for p in tree_files(root) if p.resolve() not in wheel_set)
    return tree, sum(w.stat().st_size for w in wheels)


def too_large(tree: int, wheels: int, limit: int = LIMIT_BYTES) -> str | None:
    """None when the tree and the wheels fit in ``limit`` bytes, else the one line that says by how much."""
    total = tree + wheels
    if total <= limit:
        return None
    mib = 2**20
    return (
        f"gpu_wheels: {total / mib:.1f} MiB do not fit in {limit / mib:.0f} MiB "
        f"(wheels {wheels / mib:.1f} MiB + working tree {tree / mib:.1f} MiB): {(total - limit) / mib:.1f} MiB too many"
    )
