"""The CUDA path on the tiny 4-bit Llama: the same numbers as the CPU, and real out-of-memory errors.

Skipped without a CUDA device (tests/conftest.py). The out-of-memory errors are the
allocator's own: the process is capped with ``torch.cuda.set_per_process_memory_fraction``
just above what one trial needs, so a cohort of four cannot fit while each trial alone can.
A trial sized to memory before it starts is tested on the CPU (memory/test_planner.py).
"""

from __future__ import annotations

import math

import pytest

from evo.trial import Budget, Trial
from fitness.qlora.spec import QLoRASpec

pytestmark = pytest.mark.gpu

FLOAT32 = {"bnb_4bit_compute_dtype": "float32", "learning_rate": 3e-3}
# 16 x 512 tokens a micro-step: activations far above the allocator's rounding and the base
LARGE = {**FLOAT32, "per_device_train_batch_size": 16, "max_seq_length": 512}
HEADROOM = 2.5  # the cap, in multiples of one trial's peak above the base: one fits, four do not


def runner_on(tiny_spec, device: str, cohort: int):
    from fitness.qlora.worker.runner import TrialRunner

    return TrialRunner(QLoRASpec.from_dict({**tiny_spec, "device": device, "cohort": cohort}).worker_settings)


def trial(trial_id: int, config: dict, steps: int = 3) -> Trial:
    return Trial(trial_id, config, Budget(steps=steps), seed=500 + trial_id)


def in_cohort(runner, batch):
    answers = {}
    runner.run_cohort(batch, lambda index, result: answers.setdefault(index, result))
    assert sorted(answers) == list(range(len(batch)))
    return [answers[i] for i in range(len(batch))]


def assert_close(a, b, rel):
    assert a.status is b.status and a.reason is b.reason, (a.message, b.message)
    for (sa, x), (sb, y) in zip(a.metrics["train_loss_curve"], b.metrics["train_loss_curve"]):
        assert sa == sb and math.isclose(x, y, rel_tol=rel), (
            a.metrics["train_loss_curve"],
            b.metrics["train_loss_curve"],
        )
    assert math.isclose(a.values["val_perplexity"], b.values["val_perplexity"], rel_tol=rel)


def dequantized(base) -> dict[str, object]:
    import bitsandbytes as bnb
    import bitsandbytes.functional as F

    return {
        name: F.dequantize_4bit(m.weight.data, m.weight.quant_state).float().cpu()
        for name, m in base.named_modules()
        if isinstance(m, bnb.nn.Linear4bit)
    }


def test_a_float32_trial_on_cuda_equals_the_same_trial_on_the_cpu(tiny_spec):
    """The CPU's results carry over: the same 4-bit weights, and training differs only by matmul rounding.

    No dropout: its masks come from a generator on the trial's device, and CPU and CUDA generators differ."""
    from fitness.qlora.genes import parse_genes

    config = {**FLOAT32, "max_seq_length": 64, "target_modules": "all-linear", "lora_dropout": 0.0}
    on_cpu, on_cuda = runner_on(tiny_spec, "cpu", 1), runner_on(tiny_spec, "cuda", 1)
    cpu, cuda = on_cpu.run(trial(0, config, steps=6)), on_cuda.run(trial(0, config, steps=6))
    assert cuda.ok and cuda.metrics["device"] == "cuda" and cuda.metrics["peak_cuda_allocated_mb"] > 0, cuda.message
    quant = parse_genes(config, lr_scaling=on_cpu.settings.lr_scaling, lr_reference_batch=8)[0].quant
    weights_cpu, weights_cuda = dequantized(on_cpu.base.get(quant)), dequantized(on_cuda.base.get(quant))
    assert weights_cpu.keys() == weights_cuda.keys() and weights_cpu
    differ = max(float((weights_cpu[k] - weights_cuda[k]).abs().max()) for k in weights_cpu)
    assert_close(cpu, cuda, rel=1e-3)
    assert differ == 0.0, f"the 4-bit weights differ between CPU and CUDA quantization by up to {differ}"


def cap_memory_above_one_trial(runner, alone):
    """Cap this process at the base plus HEADROOM x one trial's peak above it (the allocator's own limit)."""
    import torch

    torch.cuda.empty_cache()
    resident = torch.cuda.memory_reserved()
    per_trial = max(r.metrics["peak_cuda_allocated_mb"] for r in alone) * 2**20 - torch.cuda.memory_allocated()
    assert per_trial > 64 * 2**20, f"a trial needs only {per_trial / 2**20:.0f} MB: too little to cap reliably"
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction((resident + HEADROOM * per_trial) / total)
    return per_trial


def ooms() -> int:
    import torch

    return torch.cuda.memory_stats().get("num_ooms", 0)


def test_a_real_cuda_out_of_memory_splits_the_cohort_and_loses_no_trial(tiny_spec):
    import torch

    runner = runner_on(tiny_spec, "cuda", 4)
    batch = [trial(10 + i, {**LARGE, "r": r}) for i, r in enumerate((4, 8, 16, 8))]
    alone = [runner.run(t) for t in batch]
    assert all(r.ok for r in alone), [r.message for r in alone]
    before = ooms()
    try:
        cap_memory_above_one_trial(runner, alone)
        together = in_cohort(runner, batch)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert ooms() > before, "the cap raised no out-of-memory error: the cohort fitted"
    assert max(r.metrics["cohort_size"] for r in together) < 4  # trained in smaller cohorts after the error
    for a, b in zip(alone, together):
        assert b.ok, b.message
        assert_close(a, b, rel=1e-5)


def test_a_trial_too_large_to_fit_alone_trains_in_smaller_micro_batches_and_the_others_complete(tiny_spec):
    """8 x the rows of a trial that fits: its real out-of-memory errors cut its micro-batch (128 rows, then
    64, then 32 under a cap of 2.5 x 16 rows), the same effective batch; the free memory the plan sees
    is not capped, so the allocator's errors decide here, not the estimate."""
    import torch

    runner = runner_on(tiny_spec, "cuda", 3)
    small = [trial(20, LARGE), trial(21, {**LARGE, "r": 16})]
    alone = [runner.run(t) for t in small]
    huge = trial(22, {**LARGE, "per_device_train_batch_size": 128})
    before = ooms()
    try:
        cap_memory_above_one_trial(runner, alone)
        results = in_cohort(runner, [small[0], huge, small[1]])
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert ooms() > before, "the cap raised no out-of-memory error"
    assert results[1].ok, results[1].message
    assert results[1].metrics["memory_split_reason"].startswith("out of memory at micro-batch")
    micro = results[1].applied_config["per_device_train_batch_size"]
    assert micro < 128 and results[1].applied_config["gradient_accumulation_steps"] == 128 // micro
    for a, b in zip(alone, (results[0], results[2])):
        assert b.ok, b.message
        assert_close(a, b, rel=1e-5)
