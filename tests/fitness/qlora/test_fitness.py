"""Real trials on the tiny 4-bit Llama in a real worker subprocess."""

from __future__ import annotations

import math

import pytest

from evo.trial import Budget, FailureReason, Trial, TrialStatus
from fitness.qlora import QLoRAFitness

STEPS = Budget(steps=3)


def run(fitness, config=None, *, budget=STEPS, seed=7, trial_id=0, artifact_dir=None):
    return fitness.evaluate(Trial(trial_id, dict(config or {}), budget, seed, artifact_dir=artifact_dir))


def test_trial_reports_perplexity_and_metrics(shared_fitness):
    result = run(shared_fitness, {"max_seq_length": 32, "gradient_accumulation_steps": 2})
    assert result.status is TrialStatus.COMPLETE, result.message
    assert shared_fitness.objectives[0].name == "val_perplexity"
    assert math.isfinite(result.values["val_perplexity"]) and result.values["val_perplexity"] > 1
    m = result.metrics
    assert [step for step, _ in m["train_loss_curve"]] == [1, 2, 3]
    assert m["steps"] == 3 and m["train_tokens"] == 3 * 4 * 2 * 32
    assert m["trainable_parameters"] > 0 and m["peak_rss_mb"] > 0 and m["wall_seconds"] > 0
    assert m["eval_tokens"] == 256 and m["train_tokens_per_s"] > 0 and m["eval_tokens_per_s"] > 0
    assert result.applied_config["max_seq_length"] == 32 and result.applied_config["r"] == 64
    assert result.applied_config["bnb_4bit_compute_dtype"] in ("bfloat16", "float32")  # never "auto": it must load


def test_same_seed_same_result_on_the_reused_base(shared_fitness):
    config = {"learning_rate": 3e-3, "lora_dropout": 0.2}
    first, second = run(shared_fitness, config, seed=3), run(shared_fitness, config, seed=3)
    other_seed = run(shared_fitness, config, seed=4)
    assert first.values == second.values
    assert first.metrics["train_loss_curve"] == second.metrics["train_loss_curve"]
    assert other_seed.values != first.values


@pytest.mark.slow  # tens of seconds: run with -m slow
def test_reused_base_matches_a_freshly_loaded_one(shared_fitness, tiny_spec):
    config = {"learning_rate": 5e-3, "target_modules": "all-linear", "optim": "adamw_bnb_8bit"}
    for warmup in ({}, {"bnb_4bit_quant_type": "fp4"}, {"r": 8}):
        run(shared_fitness, warmup)  # attach, train, evaluate, detach, reload: the base has seen it all
    reused = run(shared_fitness, config, seed=11)
    # scoring every 2 steps as well: evaluating mid-training must not disturb training either
    with QLoRAFitness.from_spec({**tiny_spec, "eval_every": 2}) as fresh_fitness:
        fresh = run(fresh_fitness, config, seed=11)
    assert fresh.metrics["base_loads"] == 1 and reused.metrics["base_loads"] > 1
    assert [step for step, _ in fresh.metrics["val_perplexity_curve"]] == [2, 3]
    assert math.isclose(reused.values["val_perplexity"], fresh.values["val_perplexity"], rel_tol=1e-5)


def test_training_lowers_validation_perplexity(shared_fitness):
    budget = Budget(steps=20)
    untrained = run(shared_fitness, {"learning_rate": 1e-12}, budget=budget)  # the genes refuse 0
    genes = {"learning_rate": 1e-2, "target_modules": "all-linear", "lora_alpha": 64}
    trained = run(shared_fitness, genes, budget=budget)
    # a random base sits near uniform (ppl ~ vocab size); learning token frequencies is what LoRA can do
    assert trained.values["val_perplexity"] < 0.97 * untrained.values["val_perplexity"]


def test_tokens_budget_wins_and_sets_the_step_count(shared_fitness):
    result = run(
        shared_fitness, {"per_device_train_batch_size": 2, "max_seq_length": 64}, budget=Budget(steps=1, tokens=512)
    )
    assert result.metrics["steps"] == 4 and result.metrics["train_tokens"] == 512


@pytest.mark.parametrize("optim", ["adafactor", "paged_adamw_8bit"])
def test_other_optimizers_and_schedules_run(shared_fitness, optim):
    genes = {
        "optim": optim,
        "lr_scheduler_type": "cosine",
        "warmup_ratio": 0.5,
        "weight_decay": 0.01,
        "use_rslora": True,
    }
    result = run(shared_fitness, genes)
    assert result.ok, result.message


def test_unknown_genes_are_ignored_and_listed(shared_fitness):
    result = run(shared_fitness, {"r": 4, "temperature": 0.7, "population_size": 9})
    assert result.ok and result.metrics["ignored_config_keys"] == ["population_size", "temperature"]


def test_applied_learning_rate_is_recorded(shared_fitness):
    result = run(shared_fitness, {"learning_rate": 1e-3})
    assert result.applied_config["learning_rate"] == 1e-3
    assert result.metrics["learning_rate_gene"] == result.metrics["learning_rate_applied"] == 1e-3


def test_adapter_is_saved_when_artifacts_are_kept(shared_fitness, tmp_path):
    result = run(shared_fitness, {"r": 4}, artifact_dir=tmp_path)
    assert result.metrics["adapter_path"] == str(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def test_nan_learning_rate_diverges_at_the_step_it_shows(shared_fitness):
    result = run(shared_fitness, {"learning_rate": float("nan")})
    assert result.status is TrialStatus.FAILED and result.reason is FailureReason.DIVERGED
    assert result.metrics["diverged_step"] == 2 and "nan at step 2" in result.message


def test_huge_learning_rate_diverges(shared_fitness):
    result = run(shared_fitness, {"learning_rate": 1e20, "max_grad_norm": 0.0}, budget=Budget(steps=6))
    assert result.reason is FailureReason.DIVERGED, result.message


def test_bad_gene_value_fails_the_trial_not_the_run(shared_fitness):
    result = run(shared_fitness, {"optim": "sgd"})
    assert result.reason is FailureReason.EXCEPTION and "gene optim='sgd'" in result.message
    result = run(shared_fitness, {"target_modules": ["no_such_proj"]})
    assert result.reason is FailureReason.EXCEPTION and "no_such_proj" in result.message
    assert run(shared_fitness).ok  # and the worker carries on


def test_gradient_checkpointing_changes_memory_not_the_result(shared_fitness):
    genes = {"learning_rate": 3e-3, "lora_dropout": 0.0}
    plain = run(shared_fitness, genes)
    checkpointed = run(shared_fitness, {**genes, "gradient_checkpointing": True})
    assert math.isclose(plain.values["val_perplexity"], checkpointed.values["val_perplexity"], rel_tol=1e-4)
    assert run(shared_fitness, genes).values == plain.values  # and it was switched off again


@pytest.mark.gpu
def test_a_trial_trains_on_the_gpu(tiny_spec):
    with QLoRAFitness.from_spec({**tiny_spec, "device": "cuda"}) as fitness:
        result = run(fitness, {"max_seq_length": 32})
    assert result.status is TrialStatus.COMPLETE, result.message
    assert result.metrics["peak_memory_mb"] > 0 and math.isfinite(result.values["val_perplexity"])
