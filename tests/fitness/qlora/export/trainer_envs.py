"""The trainers' own environments for the slow export tests: one venv each, made once and kept.

Each venv gets ``torch==2.13.0`` first (the CPU build; a bare torch requirement would pull
a multi-GB CUDA one), then the trainer with torch held by a constraint, so a trainer
pinning another torch fails to install instead of replacing it. Kept under
``$EVO_TRAINER_ENVS`` (default ``~/.cache/evo-qlora/trainer-envs``); a venv whose
install finished has a ``.ready`` file naming what it holds.

LLaMA-Factory and axolotl require torchvision and torchaudio: PyPI's wheels of those are
built for PyPI's CUDA torch, and beside the CPU torch their operators don't load
(``operator torchvision::nms does not exist``), which breaks ``import transformers``
models. Their CPU builds are only on download.pytorch.org, out of reach here, so they
are removed after the install: the trainers use them only for images and audio. torchaudio
has no build for torch 2.13 at all (its last is 2.11.1, whose library doesn't load beside
it), yet LLaMA-Factory 0.9.5 imports it when it starts (``data/mm_plugin.py``, for audio
data); its venv gets a ``torchaudio`` module that imports and refuses any use, written below.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

TORCH = "torch==2.13.0"
# name: the requirements after torch (the versions tried are in docs/export.md)
ENVS: dict[str, tuple[str, ...]] = {
    "transformers-4.57": (
        "transformers==4.57.6",
        "trl==0.24.0",
        "peft",
        "bitsandbytes>=0.49",
        "accelerate",
        "datasets",
    ),
    "transformers-5": ("transformers==5.25.0", "trl==1.16.0", "peft", "bitsandbytes>=0.49", "accelerate", "datasets"),
    "llamafactory-4.57": ("llamafactory==0.9.5", "transformers==4.57.6", "bitsandbytes>=0.49"),
    "llamafactory-5": ("llamafactory==0.9.5", "bitsandbytes>=0.49"),  # the newest transformers its pins allow
    "axolotl": ("axolotl==0.19.0", "bitsandbytes>=0.49"),
}


CUDA_BUILT = ("torchvision", "torchaudio")  # PyPI's builds need PyPI's CUDA torch (see above)


NO_TORCHAUDIO = '''"""Not torchaudio: written by evo-qlora's tests/fitness/qlora/export/trainer_envs.py, since torchaudio has no
build for torch 2.13 and LLaMA-Factory imports it at start. Any use is an ImportError."""


def __getattr__(name):
    raise ImportError(f"torchaudio.{name}: torchaudio has no build for this torch (see evo-qlora's trainer_envs.py)")
'''


def envs_root() -> Path:
    return Path(os.environ.get("EVO_TRAINER_ENVS") or Path.home() / ".cache" / "evo-qlora" / "trainer-envs")


def python_of(name: str) -> Path:
    return envs_root() / name / "bin" / "python"


def ensure(name: str) -> Path:
    """The python of the venv ``name``, made now if it isn't ready (minutes: pip downloads)."""
    folder = envs_root() / name
    ready = folder / ".ready"
    if ready.is_file():
        return python_of(name)
    venv.create(folder, with_pip=True, clear=True)
    pip = [str(python_of(name)), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    constraint = folder / "constraints.txt"
    constraint.write_text(TORCH + "\n")
    subprocess.run([*pip, TORCH], check=True)
    subprocess.run([*pip, "-c", str(constraint), *ENVS[name]], check=True)
    subprocess.run([str(python_of(name)), "-m", "pip", "uninstall", "-q", "-y", *CUDA_BUILT], check=True)
    if name.startswith("llamafactory"):
        site = subprocess.run(
            [str(python_of(name)), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        (Path(site) / "torchaudio").mkdir(exist_ok=True)
        (Path(site) / "torchaudio" / "__init__.py").write_text(NO_TORCHAUDIO)
    frozen = subprocess.run(
        [str(python_of(name)), "-m", "pip", "freeze"], check=True, capture_output=True, text=True
    ).stdout
    ready.write_text(frozen)
    return python_of(name)


if __name__ == "__main__":  # python -m tests.fitness.qlora.export.trainer_envs [NAME ...]: make them ahead of the tests
    for env_name in sys.argv[1:] or ENVS:
        print(env_name, ensure(env_name), flush=True)
