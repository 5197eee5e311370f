"""Every bad config exits 2 with one line naming the culprit, and writes nothing."""

import pytest

from evo.cli import main
from evo.trial import ConfigError


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
        ("evolution.init", "latin", "evolution.init"),
        ("evolution.prior_share", 0.5, "evolution.prior_share"),  # no baseline to centre on
        ("evolution.prior_share", 1.5, "evolution.prior_share"),
        ("evolution.surprise", 3, "evolution.surprise: unknown key"),
        ("budget.steps", 0, "budget.steps"),
        ("fitness.type", "magic", "fitness.type"),
        ("fitness.noise", -1, "fitness.noise"),
        ("fixed.r", 8, "fixed.r"),
        ("search_space", {}, "search_space"),
        ("seed", -3, "seed"),
        # a run needs a budget
        ("budget", {}, "budget: set steps or tokens (e.g. budget: {steps: 100})"),
        ("budget", DELETE, "budget: set steps or tokens (e.g. budget: {steps: 100})"),
        ("budget", {"tokens": None}, "budget: set steps or tokens"),
        ("budget.tokens", 2.5, "budget.tokens: must be a whole number >= 1 or null, got 2.5"),
        # bool is not a number
        (
            "evolution.population_size",
            True,
            "evolution.population_size: must be a whole number in [2, 100000], got True",
        ),
        ("evolution.mutation_rate", False, "evolution.mutation_rate: must be a probability in [0, 1], got False"),
        ("budget.steps", True, "budget.steps: must be a whole number >= 1 or null, got True"),
        ("seed", True, "seed: must be a whole number >= 0, got True"),
        ("executor", {"cpus_per_trial": True}, "executor.cpus_per_trial: must be a number > 0, got True"),
        # misspelt keys get a suggestion
        ("evolution.populaton_size", 4, "evolution.populaton_size: unknown key (did you mean population_size?)"),
        ("evolutoin", {}, "evolutoin: unknown top-level key (did you mean evolution?)"),
        ("budget.step", 5, "budget.step: unknown key (did you mean steps?)"),
        ("executor", {"worker": 2}, "executor.worker: unknown key (did you mean workers?)"),
        # values out of range and unknown enum values
        ("evolution.mutation_sigma", 0, "evolution.mutation_sigma: must be a number in (0, 1], got 0"),
        ("evolution.mode", "async", "evolution.mode: unknown value 'async' (known: generational, steady_state, pbt"),
        ("artifacts", "some", "artifacts: unknown value 'some' (known: best, all, none)"),
        ("executor", {"workers": 0}, "executor.workers: must be a whole number >= 1 or null, got 0"),
        # nested sections: a mapping, true or null, each key checked under its full path
        ("evolution.multi_fidelity", {"eta": 1}, "evolution.multi_fidelity.eta: must be a whole number >= 2, got 1"),
        ("evolution.multi_fidelity", {"etta": 3}, "evolution.multi_fidelity.etta: unknown key (did you mean eta?)"),
        ("evolution.multi_fidelity", 3, "evolution.multi_fidelity: expected a mapping, true or null, got 3"),
        (
            "evolution.early_stopping",
            {"warmup": 1},
            "evolution.early_stopping.warmup: must be a number in [0, 1), got 1",
        ),
        (
            "evolution.early_stopping",
            {"loss_ratio": "3"},
            "evolution.early_stopping.loss_ratio: must be a number > 1 or null",
        ),
        ("evolution.pbt", None, "evolution.pbt: cannot be switched off; leave it out for the defaults"),
        ("evolution.pbt", {"interval": 0.6}, "evolution.pbt.interval: must be a number in [0.01, 0.5], got 0.6"),
        # cross-field rules
        ("evolution.immigrants", 7, "evolution.immigrants: 7 is more than the 6 offspring"),
        ("evolution.elitism", 7, "evolution.elitism: 7 is more than the population (6)"),
        (
            "evolution",
            {"strategy": "mu_comma_lambda", "offspring_size": 4},
            "evolution.offspring_size: mu_comma_lambda needs offspring_size >= population_size (4 < 8)",
        ),
        (
            "evolution",
            {"mode": "steady_state", "multi_fidelity": True},
            "evolution.multi_fidelity: works with mode: generational, not steady_state",
        ),
        (
            "evolution",
            {"mode": "pbt", "multi_fidelity": {"eta": 2}},
            "evolution.multi_fidelity: works with mode: generational",
        ),
        (
            "evolution",
            {"mode": "steady_state", "strategy": "mu_comma_lambda"},
            "evolution.strategy: steady_state replaces",
        ),
        ("evolution", {"mode": "multi_fidelity", "multi_fidelity": False}, "evolution.mode: multi_fidelity needs"),
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
    code, err = run_cli(
        capsys, "run", write_config(synthetic_config), "--set", "evolution.generations", "--out", tmp_path / "r"
    )
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


@pytest.mark.parametrize(
    "text, line",
    [
        ("seed: 1\nseed: 2\n", "YAML line 2: key 'seed' given twice in one mapping (also line 1)"),
        ("search_space:\n  r:\n    type: int\n    type: bool\n", "YAML line 4: key 'type' given twice"),
        ("evolution: {generations: 2, generations: 3}\n", "key 'generations' given twice"),
        ("- {a: 1}\n- {b: 1, b: 2}\n", "key 'b' given twice"),
    ],
)
def test_a_key_given_twice_at_any_depth_is_refused(tmp_path, capsys, text, line):
    (tmp_path / "c.yaml").write_text(text)
    assert main(["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and line in err and "c.yaml" in err, err
    assert main(["plan", str(tmp_path / "c.yaml")]) == 2  # plan reads the same way


def test_a_merge_key_overridden_by_an_explicit_one_is_yaml_s_own_rule(tmp_path):
    from evo.config import read_yaml

    (tmp_path / "c.yaml").write_text("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\n")
    assert read_yaml(tmp_path / "c.yaml")["c"] == {"x": 3, "y": 2}


@pytest.mark.parametrize("extra", [{"low": 1, "high": 64}, {"low": 1}, {"step": 2}, {"log": True}])
def test_a_gene_mixing_choices_with_a_range_is_refused(extra):
    from evo.space import SearchSpace

    with pytest.raises(ConfigError, match="search_space.r: has both choices and .*; give choices, or a range"):
        SearchSpace.from_spec({"r": {"type": "int", "choices": [4, 8], **extra}})


def test_an_error_line_escapes_control_characters_and_cuts_long_words():
    error = ConfigError("search_space." + "g" * 20_000 + ": bad\nsecond line")
    assert "\n" not in str(error) and "\\nsecond line" in str(error)
    assert len(str(error)) < 150 and "(20,014 characters)" in str(error)
    assert str(ConfigError("café /données/日本")) == "café /données/日本"  # non-ASCII is kept
