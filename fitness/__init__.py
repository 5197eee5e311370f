"""Everything that trains or scores a hyperparameter config.

Each fitness implements :class:`evo.trial.Fitness`. Heavy backends (torch, peft,
bitsandbytes) are imported only when their fitness is asked for.
"""
from __future__ import annotations

from typing import Any, Mapping

from evo.trial import ConfigError, Fitness

KINDS = ("synthetic", "qlora")


def make_fitness(spec: Mapping[str, Any]) -> Fitness:
    """Build the fitness a run config's ``fitness:`` section describes.

    Validates the section (and, for QLoRA, finds the model and data) before any run
    directory is written; raises :class:`ConfigError` naming the culprit.
    """
    kind = spec.get("type")
    if kind == "synthetic":
        from fitness.synthetic import SyntheticFitness

        return SyntheticFitness.from_spec(spec)
    if kind == "qlora":
        from fitness.qlora import QLoRAFitness

        return QLoRAFitness.from_spec(spec)
    raise ConfigError(f"fitness.type: unknown fitness {kind!r} (known: {', '.join(KINDS)})")
