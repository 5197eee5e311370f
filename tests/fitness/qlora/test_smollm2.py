"""The embedded default: a real trial on SmolLM2-135M (4-bit) on the pydoc corpus."""

from __future__ import annotations

import math

import pytest

from evo.trial import Budget, Trial
from fitness.qlora import QLoRAFitness

pytestmark = pytest.mark.slow


def test_smollm2_trial_on_pydoc_improves_on_the_base():
    pytest.importorskip("torch")
    with QLoRAFitness.from_spec({"type": "qlora", "validation_tokens": 1024}) as fitness:
        # a learning rate must be > 0 (a gene the fitness refuses otherwise): 1e-9 leaves the base as it was
        untrained = fitness.evaluate(Trial(0, {"learning_rate": 1e-9}, Budget(steps=4), seed=0))
        tuned = fitness.evaluate(Trial(1, {"learning_rate": 2e-3}, Budget(steps=4), seed=0))
    assert untrained.ok and tuned.ok, (untrained.message, tuned.message)
    assert 5 < untrained.values["val_perplexity"] < 100  # a real pretrained model, not noise
    assert math.isfinite(tuned.values["val_perplexity"])
    assert tuned.values["val_perplexity"] < untrained.values["val_perplexity"]
    assert tuned.metrics["compute_dtype"] in ("bfloat16", "float32")
