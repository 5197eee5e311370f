"""The local executor hands a fitness whose ``batch_capacity`` is above 1 its trials together."""

from __future__ import annotations

import random

import pytest

from evo import Budget, evolve
from evo.executors._local import LocalExecutor
from evo.space import SearchSpace
from evo.trial import FailureReason, Trial, TrialResult
from tests.conftest import SMALL_SPACE
from tests.evo.fitnesses import Sphere


class Batching(Sphere):
    """Sphere, answering up to four trials per call; records each batch's size."""

    batch_capacity = 4

    def __init__(self, space, tag="sphere"):
        super().__init__(space, tag)
        self.batches: list[int] = []

    def evaluate_batch(self, trials):
        self.batches.append(len(trials))
        return [self.evaluate(trial) for trial in trials]


class BatchRaises(Batching):
    def evaluate_batch(self, trials):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


class BatchTooShort(Batching):
    def evaluate_batch(self, trials):
        return [self.evaluate(trials[0])]


def space():
    return SearchSpace.from_spec(SMALL_SPACE)


@pytest.fixture
def sample_space():
    return space()


def trial(i, sp):
    rng = random.Random(i)
    return Trial(i, {g.name: g.from_unit(rng.random()) for g in sp}, Budget(steps=1), seed=i)


def test_queued_trials_go_in_one_batch_and_come_back_in_submission_order(sample_space):
    fitness = Batching(sample_space)
    executor = LocalExecutor(fitness)
    assert executor.capacity == 4
    tickets = [executor.submit(trial(i, sample_space)) for i in range(4)]
    answers = [executor.wait() for _ in range(4)]
    assert [ticket for ticket, _ in answers] == tickets and fitness.batches == [4]
    executor.submit(trial(9, sample_space))
    executor.wait()
    assert fitness.batches == [4]  # one alone goes through evaluate, as before
    assert all(result.ok for _, result in answers)


@pytest.mark.parametrize("fitness_class", [BatchRaises, BatchTooShort])
def test_a_failing_batch_fails_each_of_its_trials(sample_space, fitness_class):
    executor = LocalExecutor(fitness_class(sample_space))
    for i in range(3):
        executor.submit(trial(i, sample_space))
    results = [executor.wait()[1] for _ in range(3)]
    assert all(r.reason is FailureReason.EXCEPTION for r in results)
    assert len({r.message for r in results}) == 1


def test_threads_ignore_the_batch_capacity(sample_space):
    executor = LocalExecutor(Batching(sample_space), workers=2)
    assert executor.capacity == 2
    executor.close()


@pytest.mark.parametrize("mode", ["generational", "multi_fidelity", "pbt", "steady_state"])
def test_every_strategy_fills_the_batches(mode):
    sp = space()
    evolution = {"population_size": 8, "generations": 2, "offspring_size": 8, "mode": mode}
    if mode == "multi_fidelity":
        evolution["multi_fidelity"] = {"eta": 2, "min_fidelity": 0.25}
    batched = Batching(sp)
    result = evolve(sp, batched, budget=Budget(steps=10), evolution=evolution, seed=5)
    assert max(batched.batches) == 4 and sum(batched.batches) >= len(batched.calls) // 2
    if mode != "steady_state":  # there, 4 trials in flight instead of 1 is another (asynchronous) search
        one_at_a_time = evolve(sp, Sphere(sp), budget=Budget(steps=10), evolution=evolution, seed=5)
        assert result.best == one_at_a_time.best
        assert [dict(t.config) for t in result.best_trials] == [dict(t.config) for t in one_at_a_time.best_trials]


def test_the_default_evaluate_batch_answers_in_order(sample_space):
    fitness = Sphere(sample_space)
    batch = [trial(i, sample_space) for i in range(3)]
    assert fitness.batch_capacity == 1
    assert fitness.evaluate_batch(batch) == [fitness.evaluate(t) for t in batch]
    assert all(isinstance(r, TrialResult) for r in fitness.evaluate_batch(batch))
