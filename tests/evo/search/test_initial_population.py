"""The initial population: warm-start genomes, then draws around the baseline (the prior), then space-filling ones."""

import numpy as np

from evo.config import Init, parse_config
from evo.search._breeding import Prior, initial_candidates
from evo.space import SearchSpace
from evo.storage import RunStore
from tests.evo.strategies.test_loop import run_synthetic


def test_an_initial_population_is_the_warm_start_first_then_space_filling():
    from evo.config import Init
    from evo.search._breeding import initial_candidates

    space = SearchSpace.from_spec(
        {"r": {"type": "int", "choices": [8, 16, 32, 64]}, "x": {"type": "float", "low": 0, "high": 1}}
    )
    warm = {"r": 64, "x": 0.5}
    members = initial_candidates(space, 5, np.random.default_rng(0), [warm], Init.SOBOL)
    assert members[0] == (warm, "warm_start", [])
    assert [origin for _, origin, _ in members[1:]] == ["init"] * 4
    assert sorted(g["r"] for g, _, _ in members[1:]) == [8, 16, 32, 64]
    plain = initial_candidates(space, 5, np.random.default_rng(0), [warm], Init.RANDOM)
    assert [g for g, _, _ in plain] != [g for g, _, _ in members]


def test_a_prior_draws_its_share_around_the_centre():
    space = SearchSpace.from_spec({f"x{i}": {"type": "float", "low": 0, "high": 1} for i in range(6)})
    centre = {f"x{i}": 0.9 for i in range(6)}
    members = initial_candidates(space, 10, np.random.default_rng(0), init=Init.SOBOL, prior=Prior(centre, 0.4))
    origins = [origin for _, origin, _ in members]
    assert origins == ["prior"] * 4 + ["init"] * 6
    near = [space.distance(g, centre) for g, origin, _ in members if origin == "prior"]
    far = [space.distance(g, centre) for g, origin, _ in members if origin == "init"]
    assert all(0 < d < 0.2 for d in near) and min(far) > max(near)


def test_a_run_with_prior_share_starts_around_its_baseline(synthetic_config, tmp_path):
    genes = {
        "learning_rate": 3e-3,
        "per_device_train_batch_size": 4,
        "r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.1,
        "target_modules": "attention",
        "use_rslora": False,
    }
    synthetic_config.update(baseline={**genes, "max_seq_length": 128})  # a fixed key too: not a gene
    synthetic_config["evolution"].update(population_size=8, generations=1, prior_share=0.5)
    run_synthetic(synthetic_config, tmp_path / "run")
    with RunStore.open(tmp_path / "run") as store:
        first = store.individuals(0)
    space = parse_config(synthetic_config).space
    distance = {"prior": [], "init": []}
    for individual in first:
        assert space.contains(individual.genome) and individual.genome != genes
        distance[individual.origin].append(space.distance(individual.genome, genes))
    assert len(distance["prior"]) == 4 and len(distance["init"]) == 4
    assert max(distance["prior"]) < min(distance["init"])
