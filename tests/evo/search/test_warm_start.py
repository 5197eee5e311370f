"""A warm start: a new run's first population from an earlier run's, results reused where they can be."""

import copy

import pytest

from evo.cli import main
from evo.config import parse_config
from evo.run import start_run
from evo.storage import RunStore
from fitness.synthetic import SyntheticFitness


def run(config, run_dir, **kw):
    cfg = parse_config(config)
    fitness = SyntheticFitness.from_spec(cfg.fitness)
    calls = []
    original = fitness.evaluate
    fitness.evaluate = lambda trial: calls.append(trial.config) or original(trial)
    start_run(cfg, fitness, run_dir, **kw)
    return calls


def test_a_warm_start_starts_from_the_old_population_and_reuses_results(synthetic_config, tmp_path):
    run(synthetic_config, tmp_path / "old")
    calls = run(synthetic_config, tmp_path / "new", warm_start_from=tmp_path / "old", warm_start_top_k=3)
    with RunStore.open(tmp_path / "old") as old, RunStore.open(tmp_path / "new") as new:
        old_best = [i.genome for i in old.population(4)[:3]]
        gen0 = new.individuals(0)
        assert [i.genome for i in gen0[:3]] == old_best
        assert [i.origin for i in gen0].count("warm_start") == 3
        warm_configs = [new.trial(i.trial_id).config for i in gen0[:3]]
    assert not any(c in calls for c in warm_configs)  # same fingerprint: not trained again


def test_a_warm_start_with_another_fitness_definition_evaluates_anew(synthetic_config, tmp_path):
    run(synthetic_config, tmp_path / "old")
    other = copy.deepcopy(synthetic_config)
    other["fitness"]["noise"] = 0.02
    warnings = []
    calls = run(other, tmp_path / "new", warm_start_from=tmp_path / "old", warm_start_top_k=2, warn=warnings.append)
    with RunStore.open(tmp_path / "new") as new:
        warm = [new.trial(i.trial_id).config for i in new.individuals(0)[:2]]
    assert all(c in calls for c in warm)
    assert any("another fitness definition" in w for w in warnings)


def test_a_warm_start_into_a_changed_space_drops_samples_and_clips(synthetic_config, write_config, tmp_path, capsys):
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    assert (
        main(["run", str(write_config(synthetic_config, "old.yaml")), "--out", str(old_dir), "--quiet", "--no-plots"])
        == 0
    )
    changed = copy.deepcopy(synthetic_config)
    del changed["search_space"]["use_rslora"]
    changed["search_space"]["weight_decay"] = {"type": "float", "low": 0.0, "high": 0.1}
    changed["search_space"]["learning_rate"] = {"type": "log_float", "low": 1e-5, "high": 1e-5 * 1.5}
    code = main(
        [
            "run",
            str(write_config(changed, "new.yaml")),
            "--out",
            str(new_dir),
            "--warm-start",
            str(old_dir),
            "--warm-start-generation",
            "2",
            "--quiet",
            "--no-plots",
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "dropped gene(s) not in this search space: use_rslora" in err
    assert "weight_decay: not in the warm-start genome, sampled" in err
    assert "clipped" in err
    with RunStore.open(new_dir) as new:
        for ind in new.individuals(0):
            assert "use_rslora" not in ind.genome and "weight_decay" in ind.genome
            assert 1e-5 <= ind.genome["learning_rate"] <= 1.5e-5


def test_a_warm_start_from_a_missing_run_is_a_config_error(synthetic_config, write_config, tmp_path, capsys):
    code = main(
        [
            "run",
            str(write_config(synthetic_config)),
            "--out",
            str(tmp_path / "new"),
            "--warm-start",
            str(tmp_path / "ghost"),
        ]
    )
    assert code == 2
    assert "--warm-start" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_the_old_seed_flags_still_work_and_say_so_on_one_line(synthetic_config, write_config, tmp_path, capsys):
    config = str(write_config(synthetic_config))
    assert main(["run", config, "--out", str(tmp_path / "old"), "--quiet", "--no-plots"]) == 0
    capsys.readouterr()
    argv = ["run", config, "--out", str(tmp_path / "new"), "--seed-from", str(tmp_path / "old"), "--seed-top-k", "2"]
    assert main([*argv, "--quiet", "--no-plots"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert "evo: warning: --seed-from is deprecated since 0.2.0: use --warm-start (the same setting)" in err
    assert "evo: warning: --seed-top-k is deprecated since 0.2.0: use --warm-start-top-k (the same setting)" in err
    with RunStore.open(tmp_path / "new") as new:
        assert [i.origin for i in new.individuals(0)].count("warm_start") == 2


def test_the_old_python_names_still_work_and_warn(synthetic_config, tmp_path):
    import evo

    run(synthetic_config, tmp_path / "old")
    with pytest.warns(evo.Deprecated) as caught:
        run(synthetic_config, tmp_path / "new", seed_from=tmp_path / "old", seed_top_k=1)
    assert [str(w.message).split(" is ")[0] for w in caught] == [
        "start_run(seed_from=...)",
        "start_run(seed_top_k=...)",
    ]
    assert all(w.filename == __file__ for w in caught)  # they point at the caller
    with pytest.warns(evo.Deprecated, match="genomes_from_run"):
        genomes, _, source = evo.seed_genomes_from(tmp_path / "old", parse_config(synthetic_config).space, top_k=1)
    source.close()
    with RunStore.open(tmp_path / "new") as new:
        assert new.individuals(0)[0].genome == genomes[0]
    with pytest.raises(TypeError, match="unexpected keyword argument 'seed_fro'"):
        run(synthetic_config, tmp_path / "typo", seed_fro=tmp_path / "old")
