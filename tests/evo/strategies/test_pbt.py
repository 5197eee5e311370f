"""Population-based training on the synthetic fitness's learning-curve model."""

import yaml

from evo.cli import main
from evo.config import parse_config
from evo.run import start_run
from evo.storage import RunStore
from fitness.synthetic import STRUCTURAL_GENES, SyntheticFitness


def pbt_config(synthetic_config):
    synthetic_config["budget"] = {"steps": 80}
    synthetic_config["evolution"] = {"population_size": 8, "mode": "pbt", "pbt": {"interval": 0.25, "quantile": 0.25}}
    return synthetic_config


def run(config, run_dir):
    parsed = parse_config(config)
    return start_run(parsed, SyntheticFitness.from_spec(parsed.fitness), run_dir)


def test_members_train_in_intervals_and_the_bottom_copies_the_top(synthetic_config, tmp_path):
    run(pbt_config(synthetic_config), tmp_path / "run")
    with RunStore.open(tmp_path / "run") as store:
        assert store.finished_generations() == [0, 1, 2, 3]
        individuals = {i.id: i for i in store.individuals() if i.generation >= 0}
        for gen in (1, 2, 3):
            previous = [individuals[i.id] for i in store.population(gen - 1)]
            value = lambda i: store.trial(i.trial_id).values.get("val_perplexity", float("inf"))  # noqa: E731
            ranked = sorted(previous, key=value)
            failed = {i.id for i in previous if not store.trial(i.trial_id).ok}
            top, bottom = {i.id for i in ranked[:2]}, {i.id for i in ranked[-2:]} | failed
            members = store.individuals(gen)
            assert len(members) == 8
            for member in members:
                trial, parent = store.trial(member.trial_id), individuals[member.parents[0]]
                source = store.trial(parent.trial_id)
                assert source.ok
                assert trial.fidelity == (gen + 1) / 4 and trial.resumed_from == source.id
                assert trial.metrics["start_step"] == source.metrics["steps"] == gen * 20
                # the weights came along: the curve continues the source's
                assert (
                    trial.metrics["val_perplexity_curve"][: len(source.metrics["val_perplexity_curve"])]
                    == source.metrics["val_perplexity_curve"]
                )
                if member.origin == "exploit":
                    assert parent.id in top
                    assert all(member.genome[g] == parent.genome[g] for g in STRUCTURAL_GENES if g in member.genome)
                    assert member.genome != parent.genome  # explored
                else:
                    assert member.origin == "continue" and member.genome == parent.genome
            replaced = {individuals[m.parents[0]].id for m in members if m.origin == "continue"}
            assert replaced.isdisjoint(bottom) and len(replaced) == 8 - len(bottom)
        assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_best_members_schedule_is_stored_and_exported(synthetic_config, tmp_path, capsys):
    result = run(pbt_config(synthetic_config), tmp_path / "run")
    with RunStore.open(tmp_path / "run") as store:
        schedule = store.meta("pbt_schedule")
        individuals = {i.id: i for i in store.individuals()}
    assert [s["to_fraction"] for s in schedule] == [0.25, 0.5, 0.75, 1.0]
    assert schedule[-1]["trial"] == result.best_trials[0].id
    for earlier, later in zip(schedule, schedule[1:]):  # a lineage: each interval's member continued the one before
        assert individuals[later["individual"]].parents == [earlier["individual"]]
    assert main(["best", str(tmp_path / "run")]) == 0
    exported = yaml.safe_load(capsys.readouterr().out)
    assert len(exported["pbt_schedule"]) == 4
    assert exported["pbt_schedule"][-1]["training"]["learning_rate"] == result.best_trials[0].config["learning_rate"]


def test_same_seed_same_pbt_run(synthetic_config, tmp_path):
    a = run(pbt_config(synthetic_config), tmp_path / "a")
    b = run(pbt_config(synthetic_config), tmp_path / "b")
    assert a.best == b.best and [t.values for t in a.best_trials] == [t.values for t in b.best_trials]


def test_plots_and_report_of_a_pbt_run_show_every_interval(synthetic_config, tmp_path):
    from evo.reporting import write_report
    from evo.reporting.plots import plot_run

    run(pbt_config(synthetic_config), tmp_path / "run")
    series = plot_run(tmp_path / "run").series["generation_fitness"]
    assert series["generation"] == [0, 1, 2, 3]
    assert all(v == v for v in series["median"])  # every interval has members at the same fidelity
    assert series["best_so_far"][:3] == [None, None, None]  # nothing has trained the whole budget yet
    assert series["best_so_far"][3] is not None
    assert write_report(tmp_path / "run").is_file()
