"""The baseline users have: ``transformers.Trainer`` with a peft LoRA adapter, one trial after another.

Each trial gets what ``evo best --export`` would give it: its applied config split into
``TrainingArguments``, ``LoraConfig`` and ``BitsAndBytesConfig`` (``fitness.qlora.export``),
the same number of optimizer steps, the same micro-batches in the same order (the blocks
``fitness.qlora.data.tokens.shuffled_batches`` draws from the trial's seed), the LoRA A
matrices drawn from the trial's seed as our adapter draws them (peft's kaiming-uniform
scheme; B starts at zero in both) and the same validation blocks, scored as our loop scores
them. What stays different: dropout masks, and bf16 autocast where our loop runs the
adapters in float32. The 4-bit base is loaded once and each adapter unloaded after its
trial: the fastest way to run one trial after another with Trainer, so the comparison
flatters the baseline rather than our cohorts (``Trainer.hyperparameter_search`` would
reload the model for every trial).
"""

from __future__ import annotations

import gc
import math
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import torch

from fitness.qlora.data.tokens import IGNORE_INDEX, Blocks, TokenizedCorpus, shuffled_batches
from fitness.qlora.export import split_sections
from fitness.qlora.memory.process import peak_rss_mb, reset_peak_rss


class _Stream(torch.utils.data.IterableDataset):
    """The trial's micro-batches, row by row: the Trainer's loader batches them again as they were drawn."""

    def __init__(self, blocks: Blocks, batch_size: int, seed: int) -> None:
        self.blocks, self.batch_size, self.seed = blocks, batch_size, seed

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for ids, labels in shuffled_batches(self.blocks, self.batch_size, self.seed):
            for row, row_labels in zip(ids, labels):
                yield {"input_ids": row, "labels": row_labels}


def load_base(folder: str, quantization: dict[str, Any], device: str):
    """The base as a user loads it for QLoRA: 4-bit, the rest in the compute dtype, on ``device``."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    config = BitsAndBytesConfig(**quantization)
    model = AutoModelForCausalLM.from_pretrained(
        folder, quantization_config=config, dtype=config.bnb_4bit_compute_dtype, device_map=device
    )
    for module in model.modules():  # as fitness/qlora/base/model.py: no CPU repacking without autograd
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    return model


def _init_like_ours(model, seed: int, rank: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():  # the order our adapter walks its targets: the base's module order
        lora_a = getattr(module, "lora_A", None)
        if lora_a is None or "default" not in lora_a:
            continue
        weight = lora_a["default"].weight
        a = torch.empty(rank, weight.shape[1])
        torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
        with torch.no_grad():
            weight.copy_(a.to(weight.device, weight.dtype))


@torch.no_grad()
def perplexity(model, blocks: Blocks, batch_size: int, device: str) -> float:
    """exp of the token-weighted mean NLL over the validation blocks (as ``training/evaluate.py``)."""
    model.eval()
    nll, tokens = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        ids, labels = blocks.ids[i : i + batch_size], blocks.labels[i : i + batch_size]
        n = int((labels[:, 1:] != IGNORE_INDEX).sum())
        if n:
            nll += float(model(input_ids=ids.to(device), labels=labels.to(device)).loss) * n
            tokens += n
    mean = nll / max(tokens, 1)
    return math.exp(mean) if mean < 700 else math.inf


def train_one(
    base, data: TokenizedCorpus, applied: dict[str, Any], *, seed: int, steps: int, validation: Blocks,
    eval_batch_size: int, device: str,
) -> dict[str, Any]:  # fmt: skip
    """One trial with Trainer on ``base`` (left as it was found); its wall and training time, peak memory, ppl."""
    from peft import LoraConfig, get_peft_model
    from transformers import PrinterCallback, Trainer, TrainingArguments, default_data_collator

    sections = split_sections(applied)
    training, lora = dict(sections["training"]), sections["lora"]
    batch = training["per_device_train_batch_size"]
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    reset_peak_rss()
    start = time.perf_counter()
    model = get_peft_model(base, LoraConfig(**lora))
    _init_like_ours(model, seed, lora["r"])
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch, max_steps=steps, seed=seed, use_cpu=device == "cpu",  # bf16, fp16: in training
            report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True,
            dataloader_pin_memory=False, remove_unused_columns=False, **training,
        )  # fmt: skip
        stream = _Stream(data.train_blocks(applied["max_seq_length"]), batch, seed)
        trainer = Trainer(model=model, args=args, train_dataset=stream, data_collator=default_data_collator)
        trainer.remove_callback(PrinterCallback)  # it prints the final metrics of every trial
        output = trainer.train()
    ppl = perplexity(model, validation, eval_batch_size, device)
    restored = model.unload()  # the base without the LoRA layers, for the next trial
    assert restored is base
    del trainer, model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    wall = time.perf_counter() - start
    tokens = steps * training.get("gradient_accumulation_steps", 1) * batch * applied["max_seq_length"]
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else peak_rss_mb()
    return {
        "wall_seconds": wall,
        "train_seconds": float(output.metrics["train_runtime"]),
        "train_tokens": tokens,
        "val_perplexity": ppl,
        "peak_memory_mb": peak,
        "steps": int(output.global_step),
    }
