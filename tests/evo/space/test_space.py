import math

import numpy as np
import pytest

from evo.space._genes import SearchSpace, gene_from_spec
from evo.trial import ConfigError
from tests.conftest import SMALL_SPACE


def test_samples_are_legal_and_typed():
    space = SearchSpace.from_spec(SMALL_SPACE)
    rng = np.random.default_rng(0)
    for _ in range(500):
        genome = space.sample(rng)
        assert space.contains(genome)
        assert isinstance(genome["r"], int) and not isinstance(genome["r"], bool)
        assert isinstance(genome["lora_alpha"], int) and genome["lora_alpha"] % 8 == 0
        assert isinstance(genome["use_rslora"], bool)


def test_log_gene_samples_evenly_in_log_space():
    gene = gene_from_spec("learning_rate", {"type": "log_float", "low": 1e-6, "high": 1e-2})
    rng = np.random.default_rng(1)
    logs = np.log10([gene.sample(rng) for _ in range(4000)])
    # Uniform in log10 on [-6, -2]: each decade holds about a quarter of the samples.
    counts, _ = np.histogram(logs, bins=[-6, -5, -4, -3, -2])
    assert counts.min() > 850


def test_unit_roundtrip():
    gene = gene_from_spec("lr", {"type": "log_float", "low": 1e-5, "high": 1e-1})
    assert gene.from_unit(gene.to_unit(1e-3)) == pytest.approx(1e-3, rel=1e-2)
    assert gene.from_unit(0.0) == pytest.approx(1e-5)
    assert gene.from_unit(1.0) == pytest.approx(1e-1)


def test_clip_rounds_and_bounds():
    ints = gene_from_spec("a", {"type": "int", "low": 8, "high": 128, "step": 8})
    assert ints.clip(13.0) == 16 and isinstance(ints.clip(13.0), int)
    assert ints.clip(500) == 128 and ints.clip(-4) == 8
    rank = gene_from_spec("r", {"type": "int", "choices": [4, 8, 16]})
    assert rank.clip(100) == 16 and rank.clip(5) == 4
    floats = gene_from_spec("p", {"type": "float", "low": 0.0, "high": 0.3, "step": 0.05})
    assert floats.clip(0.12) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "spec, culprit",
    [
        ({"type": "gaussian", "low": 0, "high": 1}, "unknown gene type"),
        ({"type": "float", "low": 1.0, "high": 1.0}, "low (1.0) must be below high"),
        ({"type": "float", "low": 2.0, "high": 1.0}, "must be below high"),
        ({"type": "log_float", "low": 0.0, "high": 1.0}, "log-scaled range needs low > 0"),
        ({"type": "log_float", "low": -1e-3, "high": 1.0}, "log-scaled range needs low > 0"),
        ({"type": "categorical", "choices": []}, "non-empty list"),
        ({"type": "categorical"}, "needs a non-empty list of choices"),
        ({"type": "int", "choices": []}, "non-empty list"),
        ({"type": "int", "low": 0.5, "high": 4}, "whole-number"),
        ({"type": "float", "low": 0, "high": 1, "step": 0}, "step: must be > 0"),
        ({"type": "float", "low": 0}, "high: missing"),
        ({"type": "float", "low": "a", "high": 1}, "expected a finite number"),
        ({"type": "bool", "low": 0}, "unknown key"),
        ("log_float", "expected a mapping"),
    ],
)
def test_bad_gene_specs_name_the_gene(spec, culprit):
    with pytest.raises(ConfigError) as err:
        gene_from_spec("learning_rate", spec)
    message = str(err.value)
    assert "search_space.learning_rate" in message and culprit in message
    assert "\n" not in message


def test_adapt_drops_samples_and_clips():
    space = SearchSpace.from_spec(
        {
            "learning_rate": {"type": "log_float", "low": 1e-4, "high": 1e-3},
            "r": {"type": "int", "choices": [8, 16]},
            "lora_dropout": {"type": "float", "low": 0.0, "high": 0.2},
        }
    )
    old = {"learning_rate": 5e-2, "r": 64, "optim": "adamw_torch"}
    genome, warnings = space.adapt(old, np.random.default_rng(0))
    assert space.contains(genome)
    assert genome["learning_rate"] == pytest.approx(1e-3) and genome["r"] == 16
    text = "\n".join(warnings)
    assert "optim" in text and "lora_dropout" in text and "clipped" in text


def test_to_spec_rebuilds_the_space():
    space = SearchSpace.from_spec(SMALL_SPACE)
    again = SearchSpace.from_spec(space.to_spec())
    assert [vars(g) for g in again] == [vars(g) for g in space]


def test_distance_is_zero_for_equal_and_one_for_opposite():
    space = SearchSpace.from_spec({"x": {"type": "float", "low": 0, "high": 1}, "b": {"type": "bool"}})
    assert space.distance({"x": 0.3, "b": True}, {"x": 0.3, "b": True}) == 0
    assert math.isclose(space.distance({"x": 0.0, "b": True}, {"x": 1.0, "b": False}), 1.0)


def test_space_filling_gives_every_level_an_equal_share():
    import collections

    space = SearchSpace.from_spec(
        {
            "r": {"type": "int", "choices": [8, 16, 32, 64]},
            "dropout": {"type": "float", "low": 0.0, "high": 0.3, "step": 0.1},
            "rslora": {"type": "bool"},
            "target": {"type": "categorical", "choices": ["attention", "mlp"]},
            "lr": {"type": "log_float", "low": 1e-5, "high": 1e-2},
        }
    )
    genomes = space.space_filling(16, np.random.default_rng(0))
    assert len(genomes) == 16 and all(space.contains(g) for g in genomes)
    assert collections.Counter(g["r"] for g in genomes) == {8: 4, 16: 4, 32: 4, 64: 4}
    assert collections.Counter(g["dropout"] for g in genomes) == {0.0: 4, 0.1: 4, 0.2: 4, 0.3: 4}
    assert collections.Counter(g["rslora"] for g in genomes) == {True: 8, False: 8}
    assert collections.Counter(g["target"] for g in genomes) == {"attention": 8, "mlp": 8}
    # a continuous gene: one point in each sixteenth of its (log) range
    cells = sorted(int(space.genes["lr"].to_unit(g["lr"]) * 16) for g in genomes)
    assert cells == list(range(16))
    again = space.space_filling(16, np.random.default_rng(0))
    assert again == genomes and space.space_filling(16, np.random.default_rng(1)) != genomes
    assert space.space_filling(0, np.random.default_rng(0)) == []
