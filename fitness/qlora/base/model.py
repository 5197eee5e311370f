"""Loading the 4-bit base model: device and dtype choice, GGUF conversion cache, reloads.

Runs in the worker process only (imports torch, transformers, bitsandbytes).
"""

from __future__ import annotations

import gc
import shutil
import tempfile
from pathlib import Path

import torch

from fitness.qlora.base.settings import Device
from fitness.qlora.base.source import ModelSource, converted_gguf_dir, portable_tokenizer_class
from fitness.qlora.genes import ComputeDtype, QuantSettings

_DTYPES = {
    ComputeDtype.BFLOAT16: torch.bfloat16,
    ComputeDtype.FLOAT16: torch.float16,
    ComputeDtype.FLOAT32: torch.float32,
}


def pick_device(device: Device) -> str:
    if device is Device.AUTO:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device is Device.CUDA and not torch.cuda.is_available():
        raise RuntimeError("fitness.device is cuda but torch sees no GPU")
    return device.value


def device_kind(device: Device) -> str:
    """What the numbers depend on: cpu or the GPU model, and whether "auto" means bf16."""
    chosen = pick_device(device)
    name = torch.cuda.get_device_name() if chosen == "cuda" else "cpu"
    return f"{name}:{'bf16' if has_fast_bf16(chosen) else 'fp32'}"


def has_fast_bf16(device: str) -> bool:
    """GPUs with bf16, and CPUs with AMX or AVX512-BF16 (elsewhere bf16 is emulated, slow)."""
    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    if "AMX" in torch.backends.cpu.get_cpu_capability():
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def compute_dtype(setting: ComputeDtype, device: str) -> torch.dtype:
    if setting is ComputeDtype.AUTO:
        return torch.bfloat16 if has_fast_bf16(device) else torch.float32
    return _DTYPES[setting]


def pretrained_location(source: ModelSource, cache_root: Path) -> str:
    """What to pass to ``from_pretrained``: GGUF models go through a converted cache dir."""
    if source.gguf_file is None:
        return source.name_or_path
    return str(_converted_gguf(source, cache_root))


def load_tokenizer(source: ModelSource, cache_root: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(pretrained_location(source, cache_root))
    if tokenizer.eos_token_id is None:
        raise RuntimeError(f"the tokenizer of {source.name_or_path} has no EOS token (needed to pack)")
    return tokenizer


def load_base(source: ModelSource, quant: QuantSettings, device: str, cache_root: Path):
    """The base model quantized to 4 bits, frozen, in eval mode."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = compute_dtype(quant.bnb_4bit_compute_dtype, device)
    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant.bnb_4bit_quant_type.value,
        bnb_4bit_use_double_quant=quant.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=dtype,
    )
    # The non-quantized parts (embeddings, norms, head) in the compute dtype too: with
    # bf16 this is ~30% faster on AVX512-BF16 CPUs than keeping them in float32.
    model = AutoModelForCausalLM.from_pretrained(
        pretrained_location(source, cache_root), quantization_config=config, dtype=dtype, device_map=device
    )
    model.requires_grad_(False)
    model.eval()
    _keep_trainable_cpu_layout(model)
    return model


def _keep_trainable_cpu_layout(model) -> None:
    """Stop bitsandbytes from repacking CPU weights on the first eval-mode forward.

    bitsandbytes 0.50 repacks a Linear4bit weight for AVX512-BF16 the first time it runs
    in eval mode; the repacked matmul has no autograd, so training after an evaluation
    silently gets wrong input gradients, and the base would differ between trials. The
    plain layout is also faster here (~900 vs ~500 eval tokens/s on 2 cores).
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


class ResidentBase:
    """Keeps exactly one quantized base in memory; reloads when the quantization changes."""

    def __init__(self, source: ModelSource, device: str, cache_root: Path) -> None:
        self.source = source
        self.device = device
        self.cache_root = cache_root
        self._quant: QuantSettings | None = None
        self._model = None
        self.loads = 0

    @property
    def quant(self) -> QuantSettings | None:
        """What the resident base was quantized with (None before the first load)."""
        return self._quant

    def get(self, quant: QuantSettings):
        if self._model is None or quant != self._quant:
            self._model = None
            gc.collect()
            if self.device == "cuda":
                torch.cuda.empty_cache()
            self._model = load_base(self.source, quant, self.device, self.cache_root)
            self._quant = quant
            self.loads += 1
        return self._model


def _converted_gguf(source: ModelSource, cache_root: Path) -> Path:
    """Dequantize a GGUF checkpoint once into safetensors; later loads read the cache."""
    target = converted_gguf_dir(source, cache_root)
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(source.name_or_path, gguf_file=source.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(source.name_or_path, gguf_file=source.gguf_file, dtype=torch.float32)
    # Loaded weights are dequantized already; drop the GGUF marker so it saves as plain safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        portable_tokenizer_class(staging)
        try:
            staging.rename(target)
        except OSError:  # another process converted it meanwhile
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
