"""Partial training, checkpoints (successive halving, PBT), early stopping and extra objectives.

Real trials on the tiny 4-bit Llama in one worker that scores every 2 steps; an 8-step
budget keeps each trial well under a second.
"""

from __future__ import annotations

import math

import pytest

from evo.trial import Budget, Direction, EarlyStop, FailureReason, Trial, TrialStatus
from fitness.qlora import QLoRAFitness
from fitness.qlora.genes import TrialConfig, parse_genes
from fitness.qlora.spec import LRScaling

BUDGET = Budget(steps=8)
# dropout, accumulation and a warmup + decay schedule: everything a continuation must carry over
GENES = {
    "r": 4,
    "max_seq_length": 32,
    "gradient_accumulation_steps": 2,
    "lora_dropout": 0.1,
    "lr_scheduler_type": "linear",
    "warmup_ratio": 0.25,
    "learning_rate": 3e-3,
}
TOKENS_PER_STEP = 4 * 2 * 32
ALL_OBJECTIVES = ["val_perplexity", "peak_memory_mb", "wall_seconds", "train_tokens_per_s", "trainable_parameters"]
BELOW_EVERYTHING = EarlyStop(thresholds=((0.0, 1.0),))  # a perplexity is never below 1


@pytest.fixture(scope="module")
def fitness(tiny_spec):
    with QLoRAFitness.from_spec({**tiny_spec, "eval_every": 2, "objectives": ALL_OBJECTIVES}) as fitness:
        yield fitness


def run(fitness, config=None, *, trial_id=0, seed=5, budget=BUDGET, **fields):
    return fitness.evaluate(Trial(trial_id, dict(GENES if config is None else config), budget, seed, **fields))


@pytest.fixture(scope="module")
def half(fitness, tmp_path_factory):
    """Trial A: GENES trained to half the budget, and the checkpoint it wrote."""
    path = tmp_path_factory.mktemp("trial-a") / "checkpoint"
    result = run(fitness, fidelity=0.5, checkpoint_dir=path)
    assert result.ok, result.message
    return result, path


def test_checkpoint_layout(half):
    result, path = half
    assert sorted(p.name for p in path.iterdir()) == ["adapter.safetensors", "checkpoint.json", "state.pt"]
    assert result.metrics["checkpoint_path"] == str(path)


def test_continuing_a_checkpoint_equals_training_in_one_go(fitness, half):
    a, path = half
    b = run(fitness, trial_id=1, fidelity=1.0, resume_from=path)
    c = run(fitness, trial_id=2, fidelity=1.0)
    assert b.ok and c.ok, (b.message, c.message)
    assert (a.metrics["start_step"], a.metrics["steps"]) == (0, 4)
    assert (b.metrics["start_step"], b.metrics["steps"]) == (4, 8) and c.metrics["steps"] == 8
    assert a.metrics["budget_steps"] == b.metrics["budget_steps"] == c.metrics["budget_steps"] == 8
    assert (a.metrics["fidelity"], b.metrics["fidelity"]) == (0.5, 1.0)
    assert b.metrics["train_loss_curve"] == c.metrics["train_loss_curve"]
    assert [step for step, _ in b.metrics["train_loss_curve"]] == list(range(1, 9))
    assert [step for step, _ in b.metrics["val_perplexity_curve"]] == [2, 4, 6, 8]
    assert a.metrics["train_tokens"] + b.metrics["train_tokens"] == c.metrics["train_tokens"] == 8 * TOKENS_PER_STEP
    assert math.isclose(b.values["val_perplexity"], c.values["val_perplexity"], rel_tol=1e-6)


def test_a_new_batch_shape_continues_on_a_fresh_stream_at_the_same_fraction_of_a_tokens_budget(fitness, tmp_path):
    tokens = Budget(tokens=8 * TOKENS_PER_STEP)  # 8 steps of GENES, 16 at half the batch
    path = tmp_path / "checkpoint"
    a = run(fitness, budget=tokens, fidelity=0.5, checkpoint_dir=path)
    b = run(fitness, {**GENES, "per_device_train_batch_size": 2}, budget=tokens, fidelity=1.0, resume_from=path)
    assert a.ok and b.ok, (a.message, b.message)
    assert (a.metrics["budget_steps"], b.metrics["budget_steps"]) == (8, 16)
    assert (b.metrics["start_step"], b.metrics["steps"]) == (8, 16)  # half the budget was done, half is left
    assert [loss for _, loss in b.metrics["train_loss_curve"][:4]] == [
        loss for _, loss in a.metrics["train_loss_curve"]
    ]
    assert [step for step, _ in b.metrics["train_loss_curve"]] == [2, 4, 6, 8, *range(9, 17)]
    assert a.metrics["train_tokens"] + b.metrics["train_tokens"] == tokens.tokens


def test_pbt_exploit_copies_the_source_and_takes_the_new_learning_rate(fitness, half, tmp_path):
    import torch
    from safetensors.torch import load_file

    a, source = half
    copy = tmp_path / "copy"
    genes = {**GENES, "learning_rate": 6e-3}
    b = run(fitness, genes, trial_id=3, seed=9, fidelity=0.5, resume_from=source, checkpoint_dir=copy)
    assert b.ok, b.message
    assert b.values["val_perplexity"] == a.values["val_perplexity"]  # the copied adapter computes the same
    assert b.metrics["val_perplexity_curve"] == a.metrics["val_perplexity_curve"]
    assert (b.metrics["start_step"], b.metrics["steps"], b.metrics["train_tokens"]) == (4, 4, 0)
    adapter_a, adapter_b = load_file(source / "adapter.safetensors"), load_file(copy / "adapter.safetensors")
    assert adapter_a.keys() == adapter_b.keys() and all(torch.equal(adapter_a[k], adapter_b[k]) for k in adapter_a)
    state_a, state_b = torch.load(source / "state.pt"), torch.load(copy / "state.pt")
    moments_a, moments_b = state_a["optimizer"]["state"], state_b["optimizer"]["state"]
    assert moments_a.keys() == moments_b.keys()
    assert all(torch.equal(moments_a[i][k], moments_b[i][k]) for i in moments_a for k in moments_a[i])
    # same point of the schedule (2/3 of the rate, after warmup, on the linear decay), twice the base rate
    lr_a, lr_b = (s["optimizer"]["param_groups"][0]["lr"] for s in (state_a, state_b))
    assert math.isclose(lr_a, 3e-3 * 2 / 3) and math.isclose(lr_b, 2 * lr_a)


def test_without_eval_every_a_trial_is_validated_where_early_stopping_judges_it(tiny_spec):
    """Halving's rungs at 1/9 and 1/3 of 8 steps come into force at steps 1 and 3: the trial is
    validated there (and at its end), so the default early stopping needs no eval_every."""
    rungs = EarlyStop(thresholds=((1 / 9, math.inf), (1 / 3, math.inf)))
    with QLoRAFitness.from_spec({**tiny_spec, "eval_every": 0}) as plain:
        assert plain.intermediate_values
        kept = run(plain, early_stop=rungs)
        assert kept.ok and [s for s, _ in kept.metrics["val_perplexity_curve"]] == [1, 3, 8]
        assert [s for s, _ in run(plain).metrics["val_perplexity_curve"]] == [8]  # nothing to judge: the end only
        stopped = run(plain, early_stop=EarlyStop(thresholds=((1 / 3, 1.0),)))
        assert stopped.status is TrialStatus.PRUNED and stopped.metrics["pruned_at_step"] == 3


def test_median_rule_prunes_at_the_first_intermediate_evaluation(fitness, half):
    pruned = run(fitness, early_stop=BELOW_EVERYTHING)
    assert pruned.status is TrialStatus.PRUNED and pruned.reason is None, pruned.message
    assert "worse than the early-stopping threshold 1 at step 2/8" in pruned.message
    m = pruned.metrics
    assert m["pruned_at_step"] == m["steps"] == 2 and m["train_tokens"] == 2 * TOKENS_PER_STEP
    assert pruned.values["val_perplexity"] == m["val_perplexity_curve"][-1][1] > 1
    assert len(m["train_loss_curve"]) == 2 and pruned.applied_config["r"] == 4
    assert run(fitness, early_stop=EarlyStop(thresholds=((0.0, 1e9),))).ok
    # a resumed trial only counts its own evaluations: the first after step 4 is at 6
    _, path = half
    resumed = run(fitness, fidelity=1.0, resume_from=path, early_stop=BELOW_EVERYTHING)
    assert resumed.status is TrialStatus.PRUNED and resumed.metrics["pruned_at_step"] == 6
    assert resumed.metrics["train_tokens"] == 2 * TOKENS_PER_STEP


def test_diverging_loss_is_pruned_with_loss_ratio_and_failed_without(fitness):
    nan_rate = {**GENES, "learning_rate": float("nan")}
    pruned = run(fitness, nan_rate, early_stop=EarlyStop(loss_ratio=3.0))
    assert pruned.status is TrialStatus.PRUNED and pruned.reason is FailureReason.DIVERGED
    assert pruned.metrics["pruned_at_step"] == pruned.metrics["diverged_step"] == 2 and pruned.metrics["steps"] == 1
    assert "training loss nan at step 2/8 diverged" in pruned.message and pruned.values == {}
    huge = {**GENES, "learning_rate": 1e20, "max_grad_norm": 0.0, "lr_scheduler_type": "constant"}
    blown = run(fitness, huge, early_stop=EarlyStop(loss_ratio=3.0))
    assert blown.status is TrialStatus.PRUNED and blown.reason is FailureReason.DIVERGED, blown.message
    failed = run(fitness, nan_rate, early_stop=BELOW_EVERYTHING)  # no loss_ratio: a NaN stays a failure
    assert failed.status is TrialStatus.FAILED and failed.reason is FailureReason.DIVERGED


def test_structural_gene_mismatch_fails_with_a_clear_message(fitness, half):
    _, path = half
    result = run(fitness, {**GENES, "r": 8, "optim": "adafactor"}, resume_from=path)
    assert result.status is TrialStatus.FAILED and result.reason is FailureReason.EXCEPTION
    assert str(path) in result.message and "optim='adamw_torch' -> 'adafactor'" in result.message
    assert "r=4 -> 8" in result.message and "cannot change when continuing" in result.message


def test_missing_or_corrupt_checkpoint_fails_naming_it(fitness, half, tmp_path):
    missing = run(fitness, resume_from=tmp_path / "nowhere")
    assert missing.reason is FailureReason.EXCEPTION and f"no checkpoint at {tmp_path / 'nowhere'}" in missing.message
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(half[1], broken)
    (broken / "adapter.safetensors").write_bytes(b"not a tensor file")
    corrupt = run(fitness, resume_from=broken)
    assert corrupt.reason is FailureReason.EXCEPTION and f"checkpoint {broken} is unreadable" in corrupt.message


def test_every_requested_objective_is_reported(fitness, half):
    a, _ = half
    assert [o.name for o in fitness.objectives] == ALL_OBJECTIVES
    assert {o.name: o.direction for o in fitness.objectives}["train_tokens_per_s"] is Direction.MAXIMIZE
    assert list(a.values) == ALL_OBJECTIVES and all(math.isfinite(v) and v > 0 for v in a.values.values())
    assert a.values["trainable_parameters"] == a.metrics["trainable_parameters"]
    assert a.values["peak_memory_mb"] == a.metrics["peak_rss_mb"]  # on CPU


def test_structural_genes_are_genes_the_fitness_reads():
    assert QLoRAFitness.structural_genes == {
        "r",
        "lora_alpha",
        "use_rslora",
        "target_modules",
        "optim",
        "bnb_4bit_quant_type",
        "bnb_4bit_compute_dtype",
        "bnb_4bit_use_double_quant",
    }
    defaults = TrialConfig().as_dict()
    genes = {name: defaults[name] for name in QLoRAFitness.structural_genes}
    assert parse_genes(genes, lr_scaling=LRScaling.NONE, lr_reference_batch=8)[1] == []  # none ignored
