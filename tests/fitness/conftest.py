"""Fixtures for the QLoRA fitness tests: a tiny random Llama that loads 4-bit in a second."""

from __future__ import annotations

from pathlib import Path

import pytest

from evobench.tiny import build_tiny_llama


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("evo-cache")


@pytest.fixture(scope="session")
def tiny_spec(tiny_model, cache_dir) -> dict:
    """Small enough that a 3-step trial takes well under a second inside the worker."""
    return {
        "type": "qlora",
        "model": str(tiny_model),
        "data": "pydoc",
        "cache_dir": str(cache_dir),
        "validation_tokens": 256,
        "eval_seq_length": 64,
        "trial_timeout": 120,
        "device": "cpu",
    }


@pytest.fixture(scope="session")
def shared_fitness(tiny_spec):
    """One worker for the tests that don't break it (starting one costs ~6 s of imports)."""
    from fitness.qlora import QLoRAFitness

    fitness = QLoRAFitness.from_spec(tiny_spec)
    yield fitness
    fitness.close()


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: runs a real model for minutes (deselect with -m 'not slow')")
