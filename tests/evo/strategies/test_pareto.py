"""NSGA-II on a problem whose Pareto front is known, and the front in the store and `evo best`."""

import yaml

from evo.cli import main
from evo.run._api import evolve
from evo.space import SearchSpace
from evo.storage import RunStore
from evo.trial import Budget
from tests.evo.fitnesses import Schaffer

BUDGET = Budget(steps=10)  # a run needs one; these fitnesses ignore it


def dominates(a, b):
    return all(x <= y for x, y in zip(a, b)) and a != b


def test_nsga2_keeps_the_true_pareto_front(tmp_path):
    space = SearchSpace.from_spec({"x": {"type": "float", "low": -5.0, "high": 5.0}})
    result = evolve(
        space,
        Schaffer(space),
        budget=BUDGET,
        evolution={"population_size": 16, "generations": 12, "surrogate": "none"},
        seed=2,
        run_dir=tmp_path / "run",
    )
    front = [(t.values["f1"], t.values["f2"]) for t in result.best_trials]
    xs = [t.config["x"] for t in result.best_trials]
    # Pareto-optimal points only (an end point is non-dominated among the evaluated ones
    # until something nearer the end of [0, 2] is evaluated, hence the small margin)
    assert all(-0.1 <= x <= 2.1 for x in xs)
    assert sum(0 <= x <= 2 for x in xs) >= len(xs) - 2
    assert max(xs) - min(xs) > 1.5 and len(xs) >= 10  # spread along it by the crowding distance
    with RunStore.open(tmp_path / "run") as store:
        everything = [(t.values["f1"], t.values["f2"]) for t in store.trials() if t.ok]
        truly_nondominated = {p for p in everything if not any(dominates(q, p) for q in everything)}
        assert set(front) == truly_nondominated  # nothing lost, nothing dominated kept
        assert store.meta("pareto_front") == [t.id for t in result.best_trials]

    assert main(["best", str(tmp_path / "run")]) == 0


def test_evo_best_prints_the_whole_front(synthetic_config, write_config, tmp_path, capsys):
    synthetic_config["fitness"]["objectives"] = ["val_perplexity", "trainable_parameters"]
    run_dir = tmp_path / "run"
    assert main(["run", str(write_config(synthetic_config)), "--out", str(run_dir), "--quiet", "--no-plots"]) == 0
    capsys.readouterr()
    assert main(["best", str(run_dir)]) == 0
    front = yaml.safe_load(capsys.readouterr().out)["pareto_front"]
    with RunStore.open(run_dir) as store:
        assert sorted(e["trial_id"] for e in front) == sorted(store.meta("pareto_front"))
    ppl = [e["objectives"]["val_perplexity"] for e in front]
    params = [e["objectives"]["trainable_parameters"] for e in front]
    assert ppl == sorted(ppl) and params == sorted(params, reverse=True)  # a trade-off, best perplexity first
    assert main(["best", str(run_dir), "--top", "1"]) == 0
    assert isinstance(yaml.safe_load(capsys.readouterr().out), dict)
