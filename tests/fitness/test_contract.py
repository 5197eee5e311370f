"""One conformance suite for every fitness: what the engine relies on, checked the same way.

Subclass :class:`FitnessContract` and provide a ``make_fitness`` fixture (a factory of fresh
fitnesses); override ``fitness`` to share one instance between the tests (e.g. a running
QLoRA worker), and ``budget`` for what one quick trial may train.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from evo.trial import Budget, Direction, Fitness, GeneDecl, Trial, TrialResult, TrialStatus, ValueKind, why_refused


def bad_value(decl: GeneDecl) -> Any:
    """A value ``decl`` refuses: past a bound where there is one, else of the wrong type."""
    if decl.kind is ValueKind.BOOL:
        return "yes"
    if decl.kind in (ValueKind.CATEGORICAL, ValueKind.MODULE_LIST):
        return "no-such-choice"
    if decl.low is not None:
        return decl.low - 1
    if decl.high is not None:
        return decl.high + 1
    return "not-a-number"


class FitnessContract:
    budget = Budget(steps=3)

    @pytest.fixture
    def make_fitness(self) -> Callable[[], Fitness]:
        raise NotImplementedError("a subclass provides the fitness factory")

    @pytest.fixture
    def fitness(self, make_fitness):
        fitness = make_fitness()
        yield fitness
        fitness.close()

    def run(self, fitness: Fitness, config: dict[str, Any], seed: int = 0) -> TrialResult:
        return fitness.evaluate(Trial(0, config, self.budget, seed))

    def defaults(self, fitness: Fitness) -> dict[str, Any]:
        return {name: decl.default for name, decl in fitness.genes.items()}

    # -- what it declares ----------------------------------------------------------------
    def test_is_a_fitness(self, fitness):
        assert isinstance(fitness, Fitness)

    def test_objectives_are_named_and_directed(self, fitness):
        names = [o.name for o in fitness.objectives]
        assert names and len(set(names)) == len(names)
        assert all(isinstance(n, str) and n.isidentifier() for n in names)
        assert all(isinstance(o.direction, Direction) for o in fitness.objectives)

    def test_fingerprint_is_a_stable_string(self, fitness, make_fitness):
        first = fitness.fingerprint()
        assert isinstance(first, str) and first and fitness.fingerprint() == first
        other = make_fitness()  # another instance of the same definition
        try:
            assert other.fingerprint() == first
        finally:
            other.close()

    def test_genes_are_declared_under_their_names_with_accepted_defaults(self, fitness):
        for name, decl in fitness.genes.items():
            assert decl.name == name and why_refused(decl, decl.default) is None, decl

    def test_structural_genes_are_declared_genes(self, fitness):
        assert isinstance(fitness.structural_genes, frozenset)
        if fitness.genes:
            assert fitness.structural_genes <= set(fitness.genes)

    def test_export_puts_every_declared_gene_somewhere(self, fitness):
        for name, decl in fitness.genes.items():
            sections = fitness.export_sections({name: decl.default})
            assert any(sections.values()), f"{name} was dropped from the export"
        everything = fitness.export_sections(self.defaults(fitness))
        assert all(isinstance(section, dict) for section in everything.values())

    def test_describe_is_a_plain_mapping(self, fitness):
        assert isinstance(fitness.describe(), dict)

    # -- what it does ------------------------------------------------------------------------
    def test_the_declared_defaults_complete_with_finite_objectives(self, fitness):
        result = self.run(fitness, self.defaults(fitness))
        assert result.status is TrialStatus.COMPLETE, result.message
        for objective in fitness.objectives:
            assert math.isfinite(result.values[objective.name]), objective.name

    def test_the_same_trial_gives_the_same_values(self, fitness):
        first, second = (self.run(fitness, self.defaults(fitness), seed=7) for _ in range(2))
        assert first.ok and dict(first.values) == dict(second.values)

    def test_a_refused_value_of_any_declared_gene_never_completes(self, fitness):
        for name, decl in fitness.genes.items():
            value = bad_value(decl)
            assert why_refused(decl, value) is not None
            try:
                result = self.run(fitness, {**self.defaults(fitness), name: value})
            except Exception:  # the engine records it as a failed trial
                continue
            assert result.status is TrialStatus.FAILED, f"{name}={value!r} gave {result.status.value}"

    def test_close_is_idempotent(self, make_fitness):
        fitness = make_fitness()
        assert self.run(fitness, self.defaults(fitness)).ok  # something running to close
        fitness.close()
        fitness.close()

    def test_visible_devices_are_labels(self, fitness):
        devices = fitness.visible_devices()
        assert isinstance(devices, tuple) and all(isinstance(label, str) and label for label in devices)

    def test_the_fitness_for_a_device_answers_as_the_fitness_does(self, fitness):
        """``executor.devices`` runs trials on ``for_device`` copies: a trial's values must not change."""
        pinned = fitness.for_device("a")  # a label, not a GPU: pinning to it works on any machine
        try:
            assert isinstance(pinned, Fitness) and pinned.fingerprint() == fitness.fingerprint()
            config = self.defaults(fitness)
            assert dict(self.run(pinned, config, seed=7).values) == dict(self.run(fitness, config, seed=7).values)
        finally:
            if pinned is not fitness:
                pinned.close()


class TestSyntheticFitness(FitnessContract):
    @pytest.fixture
    def make_fitness(self):
        from fitness.synthetic import SyntheticFitness

        spec = {"type": "synthetic", "objectives": ["val_perplexity", "peak_memory_mb"]}
        return lambda: SyntheticFitness.from_spec(spec)


class TestQLoRAFitness(FitnessContract):
    """On the tiny Llama, with the session's shared worker: a 3-step trial takes well under a second."""

    @pytest.fixture
    def make_fitness(self, tiny_spec):
        from fitness.qlora import QLoRAFitness

        return lambda: QLoRAFitness.from_spec(tiny_spec)

    @pytest.fixture
    def fitness(self, shared_fitness):
        return shared_fitness

    @pytest.mark.slow  # starts a worker of its own (~6 s of imports)
    def test_close_is_idempotent(self, make_fitness):
        super().test_close_is_idempotent(make_fitness)

    @pytest.mark.slow  # starts a worker of its own (qlora/worker/test_devices.py runs pinned workers by default)
    def test_the_fitness_for_a_device_answers_as_the_fitness_does(self, fitness):
        super().test_the_fitness_for_a_device_answers_as_the_fitness_does(fitness)
