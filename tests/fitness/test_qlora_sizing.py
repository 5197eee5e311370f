"""What ``fitness.pack`` means, and how ``auto`` grows a pack while it pays (no torch, milliseconds)."""

from __future__ import annotations

import pytest

from evo.trial import ConfigError
from fitness.qlora.sizing import CPU_AUTO, CUDA_CAP, CUDA_START, MEASURED_STEPS, PackLimit, PackPlan, pack_plan
from fitness.qlora.spec import QLoRASpec


def test_pack_setting_is_checked():
    assert QLoRASpec().pack == "auto"
    assert QLoRASpec.from_dict({"pack": 3}).pack == 3
    for bad in (0, -1, "4", True, 2.0, None):
        with pytest.raises(ConfigError, match="fitness.pack"):
            QLoRASpec.from_dict({"pack": bad})


def test_what_auto_means():
    auto = QLoRASpec()
    assert pack_plan(auto, "cpu") == PackPlan(CPU_AUTO, CPU_AUTO)
    assert pack_plan(auto, "cuda") == PackPlan(CUDA_START, CUDA_CAP)
    # a trial's own cost would become its pack's: those runs train one trial at a time
    costly = QLoRASpec.from_dict({"objectives": ["val_perplexity", "wall_seconds"]})
    assert pack_plan(costly, "cuda") == PackPlan(1, 1)
    assert pack_plan(QLoRASpec.from_dict({"pack": 5, "objectives": ["val_perplexity", "wall_seconds"]}), "cpu").cap == 5


def feed(limit: PackLimit, rate: float) -> None:
    """A warm-up step, then enough timed steps at ``rate`` tokens/s to decide."""
    for _ in range(MEASURED_STEPS + 1):
        limit.observe(limit.size, int(rate), 1.0)


def test_auto_doubles_while_it_pays_and_goes_back_when_it_does_not():
    limit = PackLimit(2, 32, learning=True)
    feed(limit, 1000)
    assert limit.size == 4
    feed(limit, 1500)  # +50%: pays
    assert limit.size == 8
    feed(limit, 1550)  # +3%: not worth the memory; back to 4, for good
    assert (limit.size, limit.learning) == (4, False)
    feed(limit, 99999)
    assert limit.size == 4


def test_auto_stops_at_the_cap_and_an_oom_halves_for_good():
    limit = PackLimit(2, 6, learning=True)
    feed(limit, 1000)
    feed(limit, 2000)
    assert limit.size == 6  # not 8: the cap
    limit.observe(6, 3000, 1.0)
    limit.out_of_memory(6)
    assert (limit.size, limit.ceiling, limit.learning) == (3, 5, False)
    limit.out_of_memory(3)
    assert (limit.size, limit.ceiling) == (1, 2)


def test_steps_of_a_partial_pack_teach_nothing():
    limit = PackLimit(4, 32, learning=True)
    for _ in range(10):
        limit.observe(3, 100, 1.0)  # the tail of a batch: fewer trials than the size
    assert limit.size == 4 and limit.learning
