"""The synthetic fitness's settings: each key's rule, and the one line a bad value gives."""

from __future__ import annotations

import pytest

from evo.trial import ConfigError
from fitness.synthetic import SyntheticFitness, SyntheticSpec


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("base_perplexity", 1, "must be a number > 1, got 1"),
        ("base_perplexity", "12", "must be a number > 1, got '12'"),
        ("noise", 1, "must be a number in [0, 1), got 1"),
        ("failure_rate", 2, "must be a probability in [0, 1], got 2"),
        ("seconds_per_trial", -1, "must be a number >= 0, got -1"),
        ("duration_spread", float("nan"), "must be a number in [0, 3], got nan"),
        ("eval_every", 0, "must be a number in (0, 1], got 0"),
        ("objectives", [], "needs at least one objective, got []"),
        ("objectives", "val_perplexity", "expected a list of objective names, got 'val_perplexity'"),
        ("nois", 0.1, "unknown key (did you mean noise?)"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_key_the_value_and_what_is_accepted(key, value, message):
    with pytest.raises(ConfigError) as caught:
        SyntheticFitness.from_spec({"type": "synthetic", key: value})
    assert str(caught.value) == f"fitness.{key}: {message}"


def test_settings_built_in_python_are_checked_by_the_same_rules():
    with pytest.raises(ConfigError, match=r"^fitness\.failure_rate: must be a probability in \[0, 1\], got -0\.5$"):
        SyntheticSpec(failure_rate=-0.5)
    spec = SyntheticFitness.from_spec({"type": "synthetic", "objectives": ["val_perplexity", "peak_memory_mb"]}).spec
    assert spec == SyntheticSpec(objectives=("val_perplexity", "peak_memory_mb"))
