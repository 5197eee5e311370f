import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

# Under pytest-xdist (-n N) each worker, and the trial workers it starts, gets its share of
# the cores: torch's OpenMP threads spin, and N processes each as wide as the machine
# oversubscribe it. Set before any test imports torch.
if "PYTEST_XDIST_WORKER" in os.environ:
    _share = len(os.sched_getaffinity(0)) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _share)))

ROOT = Path(__file__).resolve().parents[1]  # the checkout: its experiments/ configs and data

SMALL_SPACE = {
    "learning_rate": {"type": "log_float", "low": 1e-5, "high": 1e-2},
    "per_device_train_batch_size": {"type": "int", "choices": [1, 2, 4, 8]},
    "r": {"type": "int", "choices": [4, 8, 16, 32, 64]},
    "lora_alpha": {"type": "int", "low": 8, "high": 128, "step": 8},
    "lora_dropout": {"type": "float", "low": 0.0, "high": 0.3},
    "target_modules": {"type": "categorical", "choices": ["attention", "all-linear", ["q_proj", "v_proj"]]},
    "use_rslora": {"type": "bool"},
}


@pytest.fixture
def synthetic_config():
    """A small synthetic run config as a dict; tests change it and write it out."""
    return small_synthetic_config()


def small_synthetic_config() -> dict:
    """The ``synthetic_config`` fixture's config, for fixtures of a wider scope."""
    return {
        "seed": 3,
        "fitness": {"type": "synthetic"},
        "budget": {"steps": 50},
        "evolution": {"population_size": 6, "generations": 4},
        "search_space": {k: dict(v) for k, v in SMALL_SPACE.items()},
        "fixed": {"max_seq_length": 128},
    }


@pytest.fixture
def write_config(tmp_path):
    def write(config, name="config.yaml"):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config))
        return path

    return write


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` skip cleanly where torch sees no CUDA device (CI never has one)."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        for item in gpu_tests:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@contextlib.contextmanager
def read_only(root: Path) -> Iterator[None]:
    """``root`` and everything under it made read-only, as ``chmod -R a-w`` does for a user.
    Where that does not bind (tests running as root), ``chattr +i`` does, for root too;
    where neither can, the test is skipped rather than passed without a read-only directory."""
    paths = [root, *sorted(root.rglob("*"))]
    modes = {p: p.stat().st_mode for p in paths}
    for path in paths:
        path.chmod(modes[path] & ~0o222)
    immutable = False
    try:
        probe = root / ".write-probe"
        try:
            probe.touch()
        except OSError:
            pass
        else:  # root ignores the modes
            probe.unlink()
            done = subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True)
            immutable = done.returncode == 0
            if not immutable:
                pytest.skip(f"cannot make a read-only directory here: {done.stderr.decode().strip()}")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", *map(str, paths)], check=True)
        for path in paths:
            path.chmod(modes[path])
