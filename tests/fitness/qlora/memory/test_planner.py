"""Trials sized to memory before they start, on the tiny 4-bit Llama in float32.

The runner runs in this process (``memory/cohort_memory.py`` is the worker's side), and each
test sets ``memory_limit_mb`` on it from the planner's own estimates, so it knows which
micro-batch a trial must come down to. Its calibration stays empty, so recorded peaks cannot
move the estimates between a limit's choice and the trial; the last tests check recording.
"""

from __future__ import annotations

import json
import math

import pytest

from evo.trial import Budget, FailureReason, Trial, TrialStatus
from fitness.qlora.base.shape import LinearKind, ModelShape
from fitness.qlora.genes import TrialConfig, parse_genes
from fitness.qlora.memory.calibration import Calibration
from fitness.qlora.memory.footprint import EvalShape
from fitness.qlora.memory.planner import MemoryPlanner, Room, next_split
from fitness.qlora.spec import QLoRASpec

FLOAT32 = {"bnb_4bit_compute_dtype": "float32", "max_seq_length": 64, "learning_rate": 3e-3, "lora_dropout": 0.0}
BUDGET = Budget(tokens=2048)  # 4 steps at 8 x 64
# Pieces of a batch add up to the whole batch's loss up to float32 rounding: measured at most
# 5e-7 relative on the curves and the perplexity here (2e-7 over 16 steps); 1e-5 leaves room for other BLAS.
REL = 1e-5
# With dropout the pieces draw masks of their own (any micro-batch change does, as in transformers),
# so the trial is another draw of the same training: measured 5e-4 relative after these 4 steps
# (1e-3 with all-linear targets; 3e-3 after 16 steps).
REL_DROPOUT = 2e-3


@pytest.fixture(scope="module")
def runner(tiny_spec, tmp_path_factory):
    from fitness.qlora.worker.runner import TrialRunner

    cache = tmp_path_factory.mktemp("memory-plan-cache")  # its own calibration file, away from other tests
    runner = TrialRunner(QLoRASpec.from_dict({**tiny_spec, "cache_dir": str(cache), "cohort": 4}).worker_settings)
    assert runner.memory is not None
    runner.memory.planner.calibration = Calibration(None)  # in memory; and kept empty:
    runner.memory.record = lambda planned, answered: None  # the limits below are chosen on uncorrected estimates
    yield runner
    runner.memory.limit_mb = None


def trial(config, trial_id=0, **fields):
    return Trial(trial_id, {**FLOAT32, **config}, BUDGET, seed=300 + trial_id, **fields)


def cfg_of(runner, config) -> TrialConfig:
    return parse_genes({**FLOAT32, **config}, lr_scaling=runner.settings.lr_scaling, lr_reference_batch=8)[0]


def total(runner, config, split=1, together=1) -> float:
    """The planner's estimated peak of ``together`` copies of the trial at ``split`` pieces, the base included."""
    planner = runner.memory.planner
    return planner.footprint([planner.shape(cfg_of(runner, config), 4, split)] * together).total


def limited(runner, limit_mb, batch):
    runner.memory.limit_mb = limit_mb
    try:
        answers = {}
        runner.run_cohort(batch, lambda index, result: answers.setdefault(index, result))
        return [answers[i] for i in range(len(batch))]
    finally:
        runner.memory.limit_mb = None


def assert_same(whole, split, rel):
    assert split.ok, split.message
    for key in ("train_loss_curve", "val_perplexity_curve"):
        a, b = whole.metrics[key], split.metrics[key]
        assert [s for s, _ in a] == [s for s, _ in b], key
        for (_, x), (_, y) in zip(a, b):
            assert math.isclose(x, y, rel_tol=rel), (key, a, b)
    assert math.isclose(split.values["val_perplexity"], whole.values["val_perplexity"], rel_tol=rel)


@pytest.mark.parametrize(
    "config",
    [
        {"per_device_train_batch_size": 8},
        {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2, "r": 16, "target_modules": "all-linear"},
        {"per_device_train_batch_size": 8, "optim": "adafactor", "lr_scheduler_type": "cosine"},
    ],
)
def test_a_trial_past_the_limit_trains_in_pieces_and_equals_the_whole_trial(runner, config):
    whole = runner.run(trial(config))
    assert whole.ok and "memory_split" not in whole.metrics, whole.message
    micro = config["per_device_train_batch_size"]
    accumulation = config.get("gradient_accumulation_steps", 1)
    for split in (2, 4):
        above, below = total(runner, config, split // 2), total(runner, config, split)
        assert below < above, f"the estimate does not shrink from {micro // (split // 2)} to {micro // split} rows"
        (result,) = limited(runner, (above + below) / 2, [trial(config)])
        assert result.metrics["memory_split"] == split, result.metrics.get("memory_split_reason")
        assert result.metrics["memory_split_reason"].startswith("planned: estimated peak")
        assert result.applied_config["per_device_train_batch_size"] == micro // split
        assert result.applied_config["gradient_accumulation_steps"] == accumulation * split
        assert result.metrics["train_tokens"] == whole.metrics["train_tokens"]  # the same effective batch
        assert_same(whole, result, REL)


def test_with_dropout_the_pieces_draw_their_own_masks_and_stay_close(runner):
    config = {"per_device_train_batch_size": 8, "lora_dropout": 0.1}
    whole = runner.run(trial(config, 1))
    limit = (total(runner, config) + total(runner, config, 2)) / 2
    (split,) = limited(runner, limit, [trial(config, 1)])
    assert split.metrics["memory_split"] == 2
    assert_same(whole, split, REL_DROPOUT)


def test_a_trial_that_cannot_fit_fails_as_oom_before_training_and_the_others_train(runner):
    big = {"per_device_train_batch_size": 8, "max_seq_length": 512, "r": 64, "target_modules": "all-linear"}
    small = {"per_device_train_batch_size": 1, "r": 4}
    assert total(runner, small) < total(runner, big, split=8)  # big, even at one row, needs more than small
    limit = (total(runner, small) + total(runner, big, split=8)) / 2
    refused, fine = limited(runner, limit, [trial(big, 2), trial(small, 3)])
    assert refused.status is TrialStatus.FAILED and refused.reason is FailureReason.OOM
    assert refused.message.startswith("DoesNotFit: does not fit even at micro-batch 1: estimated peak")
    assert f"fitness.memory_limit_mb={limit:g}" in refused.message and "beside the base is past" in refused.message
    assert refused.metrics["memory_estimate_mb"] > limit
    assert not {"train_seconds", "steps", "train_loss_curve"} & set(refused.metrics)  # no training at all
    assert fine.ok and "memory_split" not in fine.metrics
    assert_same(runner.run(trial(small, 3)), fine, REL)


def test_a_real_out_of_memory_error_cuts_a_lone_trials_micro_batch(runner):
    """A device that takes at most 2 rows in training: the decoder refuses more, as an allocator would."""
    import torch

    config = {"per_device_train_batch_size": 8}
    whole = runner.run(trial(config, 4))

    def small_device(module, args, kwargs):
        if torch.is_grad_enabled() and kwargs["input_ids"].shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    quant = cfg_of(runner, config).quant
    hook = runner.base.get(quant).get_decoder().register_forward_pre_hook(small_device, with_kwargs=True)
    try:
        result = runner.run(trial(config, 4))  # no limit: nothing is planned, the error finds the size
    finally:
        hook.remove()
    assert result.metrics["memory_split"] == 4  # 8 rows failed, then 4, then 2 trained
    assert result.metrics["memory_split_reason"].startswith("out of memory at micro-batch 4: CUDA out of memory")
    assert result.applied_config["per_device_train_batch_size"] == 2
    assert_same(whole, result, REL)


def test_a_cohort_trains_as_many_at_once_as_the_estimates_fit(runner):
    configs = [{"per_device_train_batch_size": 4, "r": r} for r in (4, 8, 8, 4)]
    alone = [runner.run(trial(c, 10 + i)) for i, c in enumerate(configs)]
    planner, cfgs = runner.memory.planner, [cfg_of(runner, c) for c in configs]
    largest = sorted((planner.shape(c, 4) for c in cfgs), key=lambda s: -s.r)
    two, three = (planner.footprint(largest[:k]).total for k in (2, 3))
    together = limited(runner, (two + three) / 2, [trial(c, 10 + i) for i, c in enumerate(configs)])
    assert max(r.metrics["cohort_size"] for r in together) == 2
    for a, b in zip(alone, together):
        assert "memory_split" not in b.metrics
        assert_same(a, b, REL)


def test_calibration_is_written_after_a_cohort_and_corrects_later_estimates(tiny_spec, tmp_path):
    from fitness.qlora.worker.runner import TrialRunner

    runner = TrialRunner(QLoRASpec.from_dict({**tiny_spec, "cache_dir": str(tmp_path)}).worker_settings)
    config = {"per_device_train_batch_size": 8, "max_seq_length": 256}
    runner.run(trial({"per_device_train_batch_size": 1}, 20))  # the worker's first cohort: one-time costs, not kept
    assert not (tmp_path / "memory").exists()
    first = runner.run(trial(config, 21))
    (path,) = (tmp_path / "memory").iterdir()
    saved = json.loads(path.read_text())
    planner = runner.memory.planner
    shape = planner.shape(cfg_of(runner, config), 4)
    raw = planner.estimated([shape])
    (record,) = saved["shapes"].values()
    assert math.isclose(record["estimated_mb"], raw.trials) and record["measured_mb"] > 0
    assert record["trials"] == 1 and record["train_tokens_per_s"] > 0 and record["eval_tokens_per_s"] > 0
    assert math.isclose(first.metrics["memory_estimate_mb"], round(raw.total, 1))  # uncorrected until measured

    record["measured_mb"] = 2 * record["estimated_mb"]  # a device where it takes twice the estimate
    path.write_text(json.dumps(saved))
    runner.memory.planner.calibration = Calibration.load(tmp_path, runner.base.source.identity, saved["device"])
    assert math.isclose(planner.footprint([shape]).trials, 2 * raw.trials)
    runner.memory.limit_mb = raw.base + 1.5 * raw.trials  # the raw estimate fits; the corrected one does not
    try:
        corrected = runner.run(trial(config, 22))
    finally:
        runner.memory.limit_mb = None
    split = corrected.metrics["memory_split"]
    assert corrected.ok and split > 1, corrected.metrics.get("memory_split_reason")
    pieces = planner.shape(cfg_of(runner, config), 4, split)  # corrected too: its nearest measured neighbour's ratio
    expected = planner.estimated([pieces]).base + 2 * planner.estimated([pieces]).trials
    assert math.isclose(corrected.metrics["memory_estimate_mb"], round(expected, 1))


def test_an_impossible_trial_fails_through_the_worker_and_the_limit_keeps_the_fingerprint(tiny_spec):
    from fitness.qlora import QLoRAFitness

    with QLoRAFitness.from_spec({**tiny_spec, "memory_limit_mb": 0.5}) as fitness:
        assert fitness.fingerprint() == QLoRAFitness.from_spec(tiny_spec).fingerprint()  # results stay reusable
        result = fitness.evaluate(trial({"per_device_train_batch_size": 1}))
    assert result.status is TrialStatus.FAILED and result.reason is FailureReason.OOM, result.message
    assert "does not fit even at micro-batch 1" in result.message and "train_seconds" not in result.metrics


# -- the planner alone (no torch) ---------------------------------------------------------------------------


def test_splits_are_the_divisors_of_the_micro_batch_in_order():
    assert [next_split(8, s) for s in (1, 2, 4, 8)] == [2, 4, 8, None]
    assert [next_split(12, s) for s in (1, 2, 3, 4, 6)] == [2, 3, 4, 6, 12]
    assert next_split(7, 1) == 7 and next_split(1, 1) is None


def test_a_rooms_space_beside_the_base():
    assert Room.limit(1000).beside(300) == 700
    assert Room.free_cuda(1000).beside(300) == pytest.approx(900)  # measured with the base already in
    assert Room.card(24).beside(4000) == pytest.approx(0.9 * (24 * 1024 - 512 - 4000))


def test_the_planner_splits_to_the_fewest_pieces_that_fit_and_counts_a_cohort():
    linear = tuple(LinearKind(n, 256, 256, 4) for n in ("q_proj", "k_proj", "v_proj", "o_proj"))
    model = ModelShape(256, 1024, 4, 4, 4, 64, 8000, True, 3_000_000, linear)
    planner = MemoryPlanner(model, EvalShape(1, 64), Calibration(None))
    cfg = TrialConfig(per_device_train_batch_size=8, max_seq_length=256)
    sizes = [planner.fit(cfg, 4, None).footprint.total] + [
        planner.footprint([planner.shape(cfg, 4, s)]).total for s in (2, 4, 8)
    ]
    assert sizes == sorted(sizes, reverse=True) and planner.fit(cfg, 4, None).split == 1
    room = Room.limit((sizes[1] + sizes[2]) / 2)  # fits at 2 rows, not at 4
    fit = planner.fit(cfg, 4, room)
    assert (fit.split, fit.micro_batch, fit.fits) == (4, 2, True) and "fits in" in fit.why()
    assert not planner.fit(cfg, 4, Room.limit(sizes[3] / 2)).fits
    shape = planner.shape(cfg, 4, 4)
    pair = planner.footprint([shape, shape])
    assert planner.capacity([shape] * 3, Room.limit(pair.total + 0.1)) == 2
    assert planner.capacity([shape] * 3, None) == 3 and planner.capacity([shape] * 3, Room.limit(1.0)) == 1
