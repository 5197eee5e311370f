"""What the training layer reads of the ``fitness:`` section: how trials are validated.

Built from :class:`~fitness.qlora.spec.QLoRASpec` (``eval_settings``), which checks each key;
nothing in this folder reads the spec itself. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvalSettings:
    """``fitness.eval_seq_length``, ``validation_tokens``, ``eval_batch_size`` and ``eval_every``."""

    seq_length: int  # block length of the validation set
    max_tokens: int  # validation set size cap
    batch_size: int  # validation blocks per forward, per trial
    every: int  # optimizer steps between intermediate evaluations; 0 = end only
