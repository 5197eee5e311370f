"""Trials trained as a cohort equal the same trials trained alone, on the tiny 4-bit Llama in float32.

The runner runs in this process (no worker), so the tests choose cohort sizes directly;
``test_cohorts_through_the_worker`` checks the path a run takes.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from evo.trial import Budget, EarlyStop, FailureReason, Trial, TrialStatus
from fitness.qlora.spec import QLoRASpec

FLOAT32 = {"bnb_4bit_compute_dtype": "float32", "max_seq_length": 32}
BUDGET = Budget(tokens=1024)  # steps differ with the batch genes: 8 at 4 x 1 x 32, 2 at 4 x 4 x 32, ...
REL = 1e-5

# Every kind of difference a cohort must keep apart, one trial each.
MIXED = [
    {"r": 4, "lora_alpha": 8, "lora_dropout": 0.1, "learning_rate": 3e-3},
    {"r": 8, "lora_alpha": 32, "use_rslora": True, "lora_dropout": 0.0, "target_modules": "all-linear"},
    {"r": 4, "target_modules": ["q_proj", "v_proj"], "optim": "adafactor", "lr_scheduler_type": "cosine"},
    {"r": 16, "target_modules": "mlp", "optim": "adamw_bnb_8bit", "lr_scheduler_type": "linear", "warmup_ratio": 0.3},
    {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 2, "weight_decay": 0.1, "max_grad_norm": 0.0},
    {"per_device_train_batch_size": 1, "learning_rate": 1e-2, "lr_scheduler_type": "constant_with_warmup"},
    {"per_device_train_batch_size": 8, "optim": "paged_adamw_8bit", "lora_dropout": 0.2},  # 1 step: leaves first
]


@pytest.fixture(scope="module")
def runner(tiny_spec):
    from fitness.qlora.worker.runner import TrialRunner

    return TrialRunner(QLoRASpec.from_dict({**tiny_spec, "eval_every": 2, "cohort": 4}).worker_settings)


def trials(configs, *, budget=BUDGET, first_id=0, **fields):
    return [
        Trial(first_id + i, {**FLOAT32, **config}, budget, seed=100 + first_id + i, **fields)
        for i, config in enumerate(configs)
    ]


def in_cohort(runner, batch):
    answers = {}
    runner.run_cohort(batch, lambda index, result: answers.setdefault(index, result))
    assert sorted(answers) == list(range(len(batch)))  # each answered exactly once
    return [answers[i] for i in range(len(batch))]


def assert_same(alone, together, rel=REL):
    assert together.status is alone.status and together.reason is alone.reason, together.message
    for key in ("train_loss_curve", "val_perplexity_curve"):
        a, b = alone.metrics[key], together.metrics[key]
        assert [s for s, _ in a] == [s for s, _ in b], key
        for (_, x), (_, y) in zip(a, b):
            assert (x is None and y is None) or math.isclose(x, y, rel_tol=rel), (key, a, b)
    for name, value in alone.values.items():
        assert math.isclose(together.values[name], value, rel_tol=rel), name


def test_a_mixed_cohort_equals_each_trial_alone(runner):
    batch = trials(MIXED)
    together = in_cohort(runner, batch)  # 7 trials, 4 at a time: the early leaver's slot goes to the next
    assert max(r.metrics["cohort_size"] for r in together) == 4
    steps = {r.metrics["steps"] for r in together}
    assert len(steps) > 2  # different step counts in one cohort
    for trial, result in zip(batch, together):
        assert result.ok, result.message
        assert_same(runner.run(trial), result)


def test_bfloat16_in_a_cohort_equals_alone(runner):
    """Measured on this CPU: bit-identical; 1e-5 leaves room for other BLAS builds."""
    bf16 = [{**config, "bnb_4bit_compute_dtype": "bfloat16"} for config in MIXED[:3]]
    batch = trials(bf16, first_id=90)
    for trial, result in zip(batch, in_cohort(runner, batch)):
        assert_same(runner.run(trial), result)


def test_the_same_cohort_twice_is_bit_identical(runner):
    batch = trials(MIXED[:4], first_id=10)
    first, second = in_cohort(runner, batch), in_cohort(runner, batch)
    for a, b in zip(first, second):
        assert a.values == b.values and a.metrics["train_loss_curve"] == b.metrics["train_loss_curve"]


def test_a_diverging_trial_leaves_the_others_unchanged(runner):
    nan_lr = {"learning_rate": float("nan")}
    # Adafactor at lr 1e3 unclipped: NaN at step 6, mid-cohort; the loss ratio rule stops it
    exploding = {"learning_rate": 1e3, "max_grad_norm": 0.0, "lora_alpha": 128, "r": 4, "optim": "adafactor"}
    batch = trials([MIXED[0], nan_lr, MIXED[1], exploding], first_id=20)
    batch[3] = replace(batch[3], seed=1, early_stop=EarlyStop(loss_ratio=3.0))
    together = in_cohort(runner, batch)
    assert together[1].status is TrialStatus.FAILED and together[1].reason is FailureReason.DIVERGED
    assert together[3].status is TrialStatus.PRUNED and together[3].reason is FailureReason.DIVERGED
    assert 1 < together[3].metrics["pruned_at_step"] < together[0].metrics["steps"]
    for i in (0, 2):
        assert_same(runner.run(batch[i]), together[i])


def test_a_bad_trial_fails_alone_in_its_cohort(runner, tmp_path):
    broken = replace(trials([MIXED[0]], first_id=30)[0], resume_from=tmp_path / "no-checkpoint")
    bad_gene = trials([{"r": 0}], first_id=31)[0]
    good = trials([MIXED[1]], first_id=32)[0]
    results = in_cohort(runner, [broken, bad_gene, good])
    assert [r.status for r in results] == [TrialStatus.FAILED, TrialStatus.FAILED, TrialStatus.COMPLETE]
    assert_same(runner.run(good), results[2])


def test_checkpoints_continue_in_a_cohort_as_one_go(runner, tmp_path):
    configs = [MIXED[0], MIXED[3], MIXED[4]]
    whole = [runner.run(t) for t in trials(configs, first_id=40)]
    halves = [
        replace(t, fidelity=0.5, checkpoint_dir=tmp_path / f"ckpt{t.trial_id}") for t in trials(configs, first_id=40)
    ]
    assert all(r.ok for r in in_cohort(runner, halves))
    rest = [
        replace(t, fidelity=1.0, resume_from=h.checkpoint_dir) for t, h in zip(trials(configs, first_id=40), halves)
    ]
    for one_go, continued in zip(whole, in_cohort(runner, rest)):
        assert continued.metrics["start_step"] > 0
        assert_same(one_go, continued)


def test_saved_adapters_load_in_peft_and_score_the_same(runner, tmp_path):
    import torch
    from peft import PeftModel

    from fitness.qlora.base.model import load_base
    from fitness.qlora.genes import parse_genes

    configs = [MIXED[1], {**MIXED[0], "use_rslora": True}]
    batch = [replace(t, artifact_dir=tmp_path / str(t.trial_id)) for t in trials(configs, first_id=50)]
    for trial, result in zip(batch, in_cohort(runner, batch)):
        cfg, _, _ = parse_genes(trial.config, lr_scaling=runner.settings.lr_scaling, lr_reference_batch=8)
        base = load_base(runner.base.source, cfg.quant, "cpu", runner.base.cache_root)
        model = PeftModel.from_pretrained(base, result.metrics["adapter_path"]).eval()
        blocks = runner.data.validation_blocks(runner.evaluation.seq_length, runner.evaluation.max_tokens)
        nll, tokens = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(blocks), 8):
                ids, labels = blocks.ids[i : i + 8], blocks.labels[i : i + 8]
                n = int((labels[:, 1:] != -100).sum())
                nll += model(input_ids=ids, labels=labels).loss.item() * n
                tokens += n
        assert math.isclose(math.exp(nll / tokens), result.values["val_perplexity"], rel_tol=1e-4)


def test_out_of_memory_splits_the_cohort_and_loses_no_trial(runner):
    """A device that holds at most 6 rows: the decoder refuses more, as an allocator would."""
    import torch

    from fitness.qlora.genes import parse_genes
    from fitness.qlora.memory.sizing import CohortLimit
    from fitness.qlora.training.train import cohort_shape

    def small_device(module, args, kwargs):
        if kwargs["input_ids"].shape[0] > 6:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    batch = trials([MIXED[0], MIXED[2], MIXED[4], MIXED[1]], first_id=60)  # 4 + 4 + 2 + 4 rows
    alone = [runner.run(t) for t in batch]
    cfg, _, _ = parse_genes(batch[0].config, lr_scaling=runner.settings.lr_scaling, lr_reference_batch=8)
    runner.sizer._limits[cohort_shape(cfg)] = CohortLimit(4, 4, learning=False)
    hook = runner.base.get(cfg.quant).get_decoder().register_forward_pre_hook(small_device, with_kwargs=True)
    try:
        together = in_cohort(runner, batch)
    finally:
        hook.remove()
    assert runner.sizer.limit(cohort_shape(cfg)).size < 4  # learnt for the cohorts after this one
    for a, b in zip(alone, together):
        assert b.ok, b.message
        assert_same(a, b)
    runner.sizer._limits.pop(cohort_shape(cfg))


def test_cohorts_through_the_worker(tiny_spec):
    from fitness.qlora import QLoRAFitness

    batch = trials(MIXED[:3], first_id=70)
    with QLoRAFitness.from_spec({**tiny_spec, "cohort": 3}) as fitness:
        assert fitness.batch_capacity == 3
        together = fitness.evaluate_batch(batch)
        pid = fitness.worker_pid
        for trial, result in zip(batch, together):
            assert result.metrics["worker_pid"] == pid and result.metrics["cohort_size"] == 3
            assert_same(fitness.evaluate(trial), result)


@pytest.mark.gpu
def test_a_cohort_equals_alone_on_cuda(tiny_spec):
    """The same on a GPU: float32 to 1e-5; bfloat16 to the 2% that bf16 rounding drifts to in 8 steps."""
    from fitness.qlora.worker.runner import TrialRunner

    runner = TrialRunner(
        QLoRASpec.from_dict({**tiny_spec, "device": "cuda", "eval_every": 2, "cohort": 4}).worker_settings
    )
    for dtype, rel in (("float32", REL), ("bfloat16", 2e-2)):
        batch = [replace(t, config={**t.config, "bnb_4bit_compute_dtype": dtype}) for t in trials(MIXED, first_id=80)]
        for trial, result in zip(batch, in_cohort(runner, batch)):
            assert_same(runner.run(trial), result, rel=rel)
