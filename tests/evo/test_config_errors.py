"""Every bad config exits 2 with one line naming the culprit, and writes nothing."""
import pytest

from evo.cli import main


def run_cli(capsys, *argv):
    code = main(list(map(str, argv)))
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def change(config, path, value):
    node = config
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[key]
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value


DELETE = object()


@pytest.mark.parametrize(
    "path, value, culprit",
    [
        ("search_space.learning_rate.type", "loguniform", "search_space.learning_rate.type"),
        ("search_space.learning_rate.low", 1.0, "search_space.learning_rate"),
        ("search_space.lora_alpha", {"type": "int", "low": 128, "high": 8}, "search_space.lora_alpha"),
        ("search_space.learning_rate.low", 0, "search_space.learning_rate.low"),
        ("search_space.target_modules.choices", [], "search_space.target_modules.choices"),
        ("evolution.population_size", 1, "evolution.population_size"),
        ("evolution.crossover_rate", 1.5, "evolution.crossover_rate"),
        ("evolution.strategy", "steady", "evolution.strategy"),
        ("evolution.surprise", 3, "evolution: unknown key"),
        ("budget.steps", 0, "budget.steps"),
        ("fitness.type", "magic", "fitness.type"),
        ("fitness.noise", -1, "fitness.noise"),
        ("fixed.r", 8, "fixed.r"),
        ("search_space", {}, "search_space"),
        ("seed", -3, "seed"),
    ],
)
def test_bad_config_exits_2_naming_the_key(synthetic_config, write_config, tmp_path, capsys, path, value, culprit):
    change(synthetic_config, path, value)
    out = tmp_path / "run"
    code, err = run_cli(capsys, "run", write_config(synthetic_config), "--out", out)
    assert code == 2
    assert len(err) == 1 and culprit in err[0], err
    assert not out.exists()


def test_missing_config_file(tmp_path, capsys):
    code, err = run_cli(capsys, "run", tmp_path / "nope.yaml", "--out", tmp_path / "run")
    assert code == 2 and len(err) == 1 and "nope.yaml: no such config file" in err[0]
    assert not (tmp_path / "run").exists()


def test_malformed_yaml(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\nsearch_space: {learning_rate: [1, 2\n")
    code, err = run_cli(capsys, "run", bad, "--out", tmp_path / "run")
    assert code == 2 and len(err) == 1 and "malformed YAML" in err[0] and "bad.yaml" in err[0]


def test_empty_config(tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    code, err = run_cli(capsys, "run", empty)
    assert code == 2 and "empty" in err[0]


def test_bad_override(synthetic_config, write_config, tmp_path, capsys):
    code, err = run_cli(capsys, "run", write_config(synthetic_config), "--set", "evolution.generations", "--out", tmp_path / "r")
    assert code == 2 and "KEY=VALUE" in err[0]


def test_resume_of_missing_run(tmp_path, capsys):
    code, err = run_cli(capsys, "resume", tmp_path / "nothing")
    assert code == 2 and len(err) == 1 and "not a run directory" in err[0]


def test_run_into_existing_run_is_refused_and_keeps_it(synthetic_config, write_config, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "run", write_config(synthetic_config), "--out", out, "--quiet", "--no-plots")[0] == 0
    before = (out / "run.db").read_bytes()
    code, err = run_cli(capsys, "run", write_config(synthetic_config), "--out", out)
    assert code == 2 and "already holds a run" in err[0]
    assert (out / "run.db").read_bytes() == before
