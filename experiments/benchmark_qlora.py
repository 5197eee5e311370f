"""Per-trial overhead and training speed of the QLoRA fitness, side by side in one run.

1. Overhead per trial: our resident base (loaded and quantized once per worker; a
   trial only attaches and removes an adapter) versus reloading the 4-bit model every
   trial, as ``Trainer.hyperparameter_search`` does with a ``model_init``.
2. Training tokens/s: our lean loop versus a plain ``transformers.Trainer`` + peft
   run of the same config (model, adapter, batch, steps, data blocks).

Runs on the embedded SmolLM2-135M (offline) unless --model says otherwise.

    python experiments/benchmark_qlora.py [--trials 3] [--steps 6] [--validation-tokens 1024]

The peer's measured setting (10 steps of 4x128 tokens, 4k validation tokens):

    python experiments/benchmark_qlora.py --steps 10 --validation-tokens 4096
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

import torch

from evo.trial import Budget, Trial
from fitness.qlora.base.model import load_base, load_tokenizer, pick_device
from fitness.qlora.base.source import default_cache_root, resolve_model
from fitness.qlora.data.corpus import load_corpus
from fitness.qlora.data.tokens import tokenize_corpus
from fitness.qlora.genes import QuantSettings, parse_genes
from fitness.qlora.spec import QLoRASpec
from fitness.qlora.training.train import EvalSettings, train_and_score

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

GENES = {
    "learning_rate": 1e-3,
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_modules": "attention",
    "per_device_train_batch_size": 4,
    "max_seq_length": 128,
    "lr_scheduler_type": "constant",
}


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def setup(spec: QLoRASpec):
    """Everything a worker does before its first trial, each part timed."""
    cache = default_cache_root(spec.model_settings)
    source = resolve_model(spec.model_settings)
    device = pick_device(spec.device)
    tokenizer, t_tok_load = timed(load_tokenizer, source, cache)
    corpus = load_corpus(spec.data, spec.validation_fraction)
    data, t_tokenize = timed(tokenize_corpus, corpus, tokenizer, cache)
    base, t_load = timed(load_base, source, QuantSettings(), device, cache)
    return source, device, cache, data, base, {"tokenizer": t_tok_load, "tokenization": t_tokenize, "load": t_load}


def one_trial(base, data, cfg, steps, evaluation, seed):
    """A trial as the worker runs it; returns (wall, train+eval seconds, metrics)."""
    trial = Trial(0, {}, Budget(steps=steps), seed)
    outcome, wall = timed(train_and_score, base, data, cfg, trial=trial, budget_steps=steps, evaluation=evaluation)
    metrics = outcome.metrics
    return wall, metrics["train_seconds"] + metrics["eval_seconds"], metrics


def trainer_tokens_per_s(base, data, cfg, steps):
    """The same training with transformers.Trainer + peft; returns (tokens/s of train(), wall incl. setup)."""
    from peft import LoraConfig, get_peft_model
    from transformers import PrinterCallback, Trainer, TrainingArguments

    blocks = data.train_blocks(cfg.max_seq_length)

    class Blocks(torch.utils.data.Dataset):
        def __len__(self):
            return len(blocks)

        def __getitem__(self, i):
            return {"input_ids": blocks.ids[i], "labels": blocks.labels[i]}

    t0 = time.perf_counter()
    lora = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules(),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, lora)
    args = TrainingArguments(
        output_dir="/tmp/evo-bench-trainer",
        max_steps=steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="constant",
        max_grad_norm=cfg.max_grad_norm,
        logging_strategy="no",
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        bf16=next(p for p in base.parameters() if p.is_floating_point()).dtype == torch.bfloat16,
        dataloader_num_workers=0,
        disable_tqdm=True,
        log_level="error",
    )
    trainer = Trainer(model=model, args=args, train_dataset=Blocks())
    trainer.remove_callback(PrinterCallback)  # keep the table the only output
    output = trainer.train()
    wall = time.perf_counter() - t0
    model.unload()
    tokens = steps * cfg.tokens_per_step
    return tokens / output.metrics["train_runtime"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--validation-tokens", type=int, default=1024)
    args = parser.parse_args()
    spec = QLoRASpec(model=args.model, validation_tokens=args.validation_tokens)
    evaluation = EvalSettings(spec.eval_seq_length, spec.validation_tokens, spec.eval_batch_size, 0)
    cfg, _, _ = parse_genes(GENES, lr_scaling=spec.lr_scaling, lr_reference_batch=spec.lr_reference_batch)
    torch.set_num_threads(torch.get_num_threads())

    source, device, cache, data, base, once = setup(spec)
    one_trial(base, data, cfg, 1, evaluation, 0)  # warm-up: first-call kernels, allocator

    # Interleaved, A/B per repetition, so that a noisy machine slows both sides alike.
    resident, reloads, ours_tps, trainer_runs = [], [], [], []
    for seed in range(args.trials):
        wall, work, metrics = one_trial(base, data, cfg, args.steps, evaluation, seed)
        resident.append((wall, work))
        ours_tps.append(metrics["train_tokens_per_s"])
        fresh, t_load = timed(load_base, source, QuantSettings(), device, cache)
        wall, work, _ = one_trial(fresh, data, cfg, args.steps, evaluation, seed)
        reloads.append((t_load + wall, t_load, work))
        del fresh
        gc.collect()
        # The Trainer gets a base of its own: accelerate's prepare() patches the model it is
        # given, which must not leak into the resident base the other trials use.
        own = load_base(source, QuantSettings(), device, cache)
        trainer_runs.append(trainer_tokens_per_s(own, data, cfg, args.steps))
        del own
        gc.collect()

    res_over = statistics.median(w - work for w, work in resident)
    rel_load = statistics.median(t for _, t, _ in reloads)
    rel_over = statistics.median(w - work for w, _, work in reloads)
    res_wall = statistics.median(w for w, _ in resident)
    rel_wall = statistics.median(w for w, _, _ in reloads)
    ours = statistics.median(ours_tps)
    trainer_tps = statistics.median(t for t, _ in trainer_runs)
    trainer_wall = statistics.median(w for _, w in trainer_runs)
    print(
        f"model {args.model} on {device}; {args.trials} trials of {args.steps} steps x "
        f"{cfg.per_device_train_batch_size}x{cfg.max_seq_length} tokens, {args.validation_tokens} validation tokens\n"
    )
    print(
        "once per worker (resident base): "
        f"tokenizer {once['tokenizer']:.2f} s, tokenization {once['tokenization']:.2f} s (disk-cached), "
        f"4-bit load + quantization {once['load']:.2f} s\n"
    )
    print(f"{'per trial (median)':<40}{'resident base':>15}{'reload each trial':>20}{'ratio':>8}")
    print(f"{'model load + quantization, s':<40}{0.0:>15.2f}{rel_load:>20.2f}{'':>8}")
    print(
        f"{'overhead outside train+eval, s':<40}{res_over:>15.2f}{rel_over:>20.2f}{rel_over / max(res_over, 1e-9):>7.1f}x"
    )
    print(f"{'trial wall time, s':<40}{res_wall:>15.2f}{rel_wall:>20.2f}{rel_wall / res_wall:>7.2f}x")
    print()
    print(f"{'training tokens/s (median)':<40}{'ours':>15}{'Trainer + peft':>20}{'ratio':>8}")
    print(f"{'steps only (Trainer: train_runtime)':<40}{ours:>15.1f}{trainer_tps:>20.1f}{ours / trainer_tps:>7.2f}x")
    print(f"{'Trainer.train() wall incl. its set-up, s':<40}{'':>15}{trainer_wall:>20.2f}")


if __name__ == "__main__":
    main()
