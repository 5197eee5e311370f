"""What ``fitness.cohort`` means, and how ``auto`` grows a cohort while it pays (no torch, milliseconds)."""

from __future__ import annotations

import pytest

from evo.trial import ConfigError, Deprecated
from fitness.qlora.memory.sizing import (
    CPU_AUTO,
    CUDA_CAP,
    CUDA_START,
    MEASURED_STEPS,
    CohortLimit,
    CohortPlan,
    cohort_plan,
)
from fitness.qlora.spec import QLoRASpec


def test_cohort_setting_is_checked():
    assert QLoRASpec().cohort == "auto"
    assert QLoRASpec.from_dict({"cohort": 3}).cohort == 3
    for bad in (0, -1, "4", True, 2.0, None):
        with pytest.raises(ConfigError, match="fitness.cohort"):
            QLoRASpec.from_dict({"cohort": bad})


def test_the_old_pack_key_still_sets_the_cohort_and_says_so():
    with pytest.warns(Deprecated, match=r"fitness.pack is deprecated since 0.2.0: use fitness.cohort"):
        assert QLoRASpec.from_dict({"pack": 4}).cohort == 4
    with pytest.raises(ConfigError, match="fitness.pack: is the old name of fitness.cohort"):
        QLoRASpec.from_dict({"pack": 4, "cohort": 2})


def test_what_auto_means():
    auto = QLoRASpec().memory_settings
    assert cohort_plan(auto, "cpu") == CohortPlan(CPU_AUTO, CPU_AUTO)
    assert cohort_plan(auto, "cuda") == CohortPlan(CUDA_START, CUDA_CAP)
    # a trial's own cost would become its cohort's: those runs train one trial at a time
    costly = QLoRASpec.from_dict({"objectives": ["val_perplexity", "wall_seconds"]}).memory_settings
    assert cohort_plan(costly, "cuda") == CohortPlan(1, 1)
    assert (
        cohort_plan(
            QLoRASpec.from_dict({"cohort": 5, "objectives": ["val_perplexity", "wall_seconds"]}).memory_settings, "cpu"
        ).cap
        == 5
    )


def feed(limit: CohortLimit, rate: float) -> None:
    """A warm-up step, then enough timed steps at ``rate`` tokens/s to decide."""
    for _ in range(MEASURED_STEPS + 1):
        limit.observe(limit.size, int(rate), 1.0)


def test_auto_doubles_while_it_pays_and_goes_back_when_it_does_not():
    limit = CohortLimit(2, 32, learning=True)
    feed(limit, 1000)
    assert limit.size == 4
    feed(limit, 1500)  # +50%: pays
    assert limit.size == 8
    feed(limit, 1550)  # +3%: not worth the memory; back to 4, for good
    assert (limit.size, limit.learning) == (4, False)
    feed(limit, 99999)
    assert limit.size == 4


def test_auto_stops_at_the_cap_and_an_oom_halves_for_good():
    limit = CohortLimit(2, 6, learning=True)
    feed(limit, 1000)
    feed(limit, 2000)
    assert limit.size == 6  # not 8: the cap
    limit.observe(6, 3000, 1.0)
    limit.out_of_memory(6)
    assert (limit.size, limit.ceiling, limit.learning) == (3, 5, False)
    limit.out_of_memory(3)
    assert (limit.size, limit.ceiling) == (1, 2)


def test_steps_of_a_partial_cohort_teach_nothing():
    limit = CohortLimit(4, 32, learning=True)
    for _ in range(10):
        limit.observe(3, 100, 1.0)  # the tail of a batch: fewer trials than the size
    assert limit.size == 4 and limit.learning
