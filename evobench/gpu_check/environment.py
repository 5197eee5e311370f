"""Step 1: what the machine is (python, torch, CUDA, driver, the GPU) and whether bitsandbytes'
kernels run there: a 4-bit matmul on the device, against the same weights dequantized."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata

from evobench.gpu_check.record import Options, Record, StepStatus, step_main

PACKAGES = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "deap", "moocore", "gguf", "numpy")
MATMUL_TOLERANCE = 2e-2  # relative: the same dequantized weights, only the matmul's rounding differs (bf16)


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def driver_version() -> str:
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({type(exc).__name__})"
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else "unknown"


def four_bit_matmul(device: str) -> dict[str, object]:
    """NF4-quantize a weight on ``device`` and multiply through bitsandbytes, in float32 and bfloat16."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as F
    import torch
    from bitsandbytes import cextension

    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(512, 1024, generator=generator).to(device)
    out: dict[str, object] = {"library": str(getattr(getattr(cextension.lib, "_lib", None), "_name", cextension.lib))}
    for dtype in (torch.float32, torch.bfloat16):
        packed, state = F.quantize_4bit(weight.to(dtype), quant_type="nf4", compress_statistics=True)
        x = torch.randn(16, 1024, generator=generator).to(device, dtype)
        y = bnb.matmul_4bit(x, packed.t(), quant_state=state)
        reference = x.float() @ F.dequantize_4bit(packed, state).float().t()
        error = float((y.float() - reference).norm() / reference.norm())
        out[str(dtype).removeprefix("torch.")] = {"relative_error": error, "on": str(y.device)}
    return out


def run(options: Options, record: Record) -> tuple[StepStatus, str]:
    import torch

    found = versions()
    info: dict[str, object] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "versions": found,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            gpus=torch.cuda.device_count(),
            driver=driver_version(),
            bf16=torch.cuda.is_bf16_supported(),
        )
    record.update(**info)
    if options.device == "cuda" and not torch.cuda.is_available():
        return StepStatus.FAILED, f"torch {torch.__version__} sees no CUDA device"
    matmul = four_bit_matmul(options.device)
    record.update(bitsandbytes=matmul)
    missing = [name for name, version in found.items() if version == "missing"]
    errors = {k: v["relative_error"] for k, v in matmul.items() if isinstance(v, dict)}
    rows = [
        "| what | value |",
        "|---|---|",
        f"| python | {info['python']} |",
        f"| torch (CUDA) | {info['torch']} ({info['torch_cuda']}) |",
    ]
    if torch.cuda.is_available():
        rows += [
            f"| GPU | {info['gpu']}, {info['gpu_memory_gib']} GiB, compute {info['compute_capability']} |",
            f"| driver | {info['driver']} |",
        ]
    rows += [f"| {name} | {version} |" for name, version in found.items() if name != "torch"]
    rows += [f"| bitsandbytes library | `{str(matmul['library']).rsplit('/', 1)[-1]}` |"]
    rows += [f"| 4-bit matmul on {options.device}, {k} | relative error {e:.1e} |" for k, e in errors.items()]
    record.markdown = rows
    where = info.get("gpu", "CPU")
    summary = (
        f"{where}; torch {info['torch']}, CUDA {info['torch_cuda']}; 4-bit matmul on {options.device}: "
        + ", ".join(f"{k} {e:.1e}" for k, e in errors.items())
    )
    if missing:
        return StepStatus.FAILED, f"missing {', '.join(missing)}; {summary}"
    if not all(e < MATMUL_TOLERANCE for e in errors.values()):
        return StepStatus.FAILED, f"the 4-bit matmul is off; {summary}"
    return StepStatus.PASSED, summary


if __name__ == "__main__":
    step_main(run)
