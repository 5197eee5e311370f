import numpy as np
import pytest

from evo.space._genes import SearchSpace, gene_from_spec
from evo.space._operators import crossover_blend, crossover_uniform, mutate, mutate_gene
from tests.conftest import SMALL_SPACE

WIDE_SPACE = {
    **SMALL_SPACE,
    "warmup_ratio": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.01},
    "gradient_accumulation_steps": {"type": "int", "low": 1, "high": 64, "log": True},
    "lr_scheduler_type": {"type": "categorical", "choices": ["constant", "linear", "cosine"]},
    "max_grad_norm": {"type": "categorical", "choices": [0.3, 1.0, 10.0], "ordered": True},
}


def test_thousands_of_mutations_keep_bounds_and_types():
    space = SearchSpace.from_spec(WIDE_SPACE)
    rng = np.random.default_rng(0)
    genome = space.sample(rng)
    for _ in range(5000):
        genome = mutate(space, genome, rng, gene_rate=0.5, sigma=0.3)
        assert space.contains(genome), genome
        assert all(type(genome[g]) is int for g in ("r", "lora_alpha", "gradient_accumulation_steps"))


@pytest.mark.parametrize("crossover", [crossover_uniform, crossover_blend])
def test_thousands_of_crossovers_keep_bounds_and_types(crossover):
    space = SearchSpace.from_spec(WIDE_SPACE)
    rng = np.random.default_rng(1)
    for _ in range(3000):
        a, b = space.sample(rng), space.sample(rng)
        for child in crossover(space, a, b, rng):
            assert space.contains(child), child


def test_mutation_always_changes_the_genome():
    space = SearchSpace.from_spec(SMALL_SPACE)
    rng = np.random.default_rng(2)
    for _ in range(500):
        genome = space.sample(rng)
        assert mutate(space, genome, rng, gene_rate=0.0, sigma=0.1) != genome


def test_log_gene_mutates_in_log_space():
    gene = gene_from_spec("learning_rate", {"type": "log_float", "low": 1e-6, "high": 1e-1})
    rng = np.random.default_rng(3)
    ratios = [mutate_gene(gene, 1e-3, rng, 0.1) / 1e-3 for _ in range(4000)]
    logs = np.log10(ratios)
    # Symmetric in log space: as many halvings as doublings, centred on no change.
    assert abs(np.median(logs)) < 0.05
    assert np.mean(np.array(ratios) < 1) == pytest.approx(0.5, abs=0.05)


def test_ordered_choices_move_to_neighbours():
    gene = gene_from_spec("r", {"type": "int", "choices": [4, 8, 16, 32, 64, 128]})
    rng = np.random.default_rng(4)
    moves = [abs(gene.index(mutate_gene(gene, 16, rng, 0.15)) - 2) for _ in range(2000)]
    assert min(moves) >= 1
    assert np.mean(np.array(moves) == 1) > 0.8


def test_blend_children_lie_near_the_parents():
    space = SearchSpace.from_spec({"x": {"type": "float", "low": 0.0, "high": 1.0}})
    rng = np.random.default_rng(5)
    for _ in range(1000):
        c1, c2 = crossover_blend(space, {"x": 0.4}, {"x": 0.6}, rng)
        assert 0.3 - 1e-9 <= c1["x"] <= 0.7 + 1e-9 and 0.3 - 1e-9 <= c2["x"] <= 0.7 + 1e-9
