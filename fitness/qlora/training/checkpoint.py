"""Trial checkpoints: what a later trial needs to continue training where one stopped.

A checkpoint directory holds
- ``adapter.safetensors``: the LoRA weights (peft state dict, adapter name stripped);
- ``state.pt``: the optimizer's state_dict (dropout needs no RNG state: it is reseeded from
  the data position every micro-batch);
- ``checkpoint.json``: the step reached (of how many), the data position, the schedule it ran, the
  curves so far and the structural genes' values.
``checkpoint.json`` is removed first and written last, so a half-written checkpoint
reads as missing rather than as a mix of two trials.

A resumed trial keeps the weights, optimizer moments and data position, and
applies its own hyperparameters (learning rate, weight decay, schedule, ...); only the
genes in STRUCTURAL_GENES must match, since the weights and moments depend on them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from fitness.qlora.genes import STRUCTURAL_GENES, TrialConfig

FORMAT = 2  # bump when the layout changes; older checkpoints are then refused (2: no RNG state)
ADAPTER, STATE, META = "adapter.safetensors", "state.pt", "checkpoint.json"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or was trained with other structural genes."""


@dataclass(frozen=True)
class DataPosition:
    """Where a trial is in its shuffled training stream.

    ``consumed`` micro-batches of ``batch_size`` blocks of ``seq_length`` tokens were
    drawn from the stream seeded with ``seed``.
    """

    seed: int
    consumed: int
    batch_size: int
    seq_length: int

    def continued(self, cfg: TrialConfig, step: int) -> DataPosition:
        """The same stream when the batch shape is unchanged, else a fresh one seeded from (seed, step)."""
        if (cfg.per_device_train_batch_size, cfg.max_seq_length) == (self.batch_size, self.seq_length):
            return self
        fresh_seed = (self.seed * 1_000_003 + step) % 2**63  # distinct per (seed, step), reproducible
        return DataPosition(fresh_seed, 0, cfg.per_device_train_batch_size, cfg.max_seq_length)


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    budget_steps: int
    data: DataPosition
    train_loss_curve: list[list[float]]
    val_perplexity_curve: list[list[float | None]]
    structural: dict[str, Any]
    adapter: dict[str, torch.Tensor]
    optimizer: dict[str, Any]

    @property
    def first_loss(self) -> float:
        """The first step's training loss, which divergence is measured against."""
        return self.train_loss_curve[0][1]

    def progress_for(self, budget_steps: int) -> tuple[int, list, list]:
        """The step reached and the curves, on the step scale of a budget of ``budget_steps``.

        Under a tokens budget, a trial with other batch genes has another step count for
        the same budget: the fraction of the budget done is what carries over.
        """
        if budget_steps == self.budget_steps:
            return self.step, list(self.train_loss_curve), list(self.val_perplexity_curve)
        scale = budget_steps / self.budget_steps
        return (
            round(self.step * scale),
            [[round(step * scale, 3), v] for step, v in self.train_loss_curve],
            [[round(step * scale, 3), v] for step, v in self.val_perplexity_curve],
        )

    def check_structure(self, cfg: TrialConfig) -> None:
        """Raise CheckpointError naming every structural gene this trial would change."""
        genes = cfg.as_dict()
        changed = [f"{k}={v!r} -> {genes[k]!r}" for k, v in sorted(self.structural.items()) if v != genes[k]]
        if changed:
            raise CheckpointError(
                f"checkpoint {self.path} was trained with other structural genes ({', '.join(changed)}); "
                f"{', '.join(sorted(STRUCTURAL_GENES))} cannot change when continuing a checkpoint"
            )

    def restore(self, adapter, optimizer: torch.optim.Optimizer) -> None:
        """Load the adapter weights and optimizer state into a fresh :class:`~fitness.qlora.training.adapter.Adapter`.

        ``optimizer.load_state_dict`` also brings back the source's learning rate and weight
        decay: the caller re-applies the resumed trial's own afterwards.
        """
        try:
            adapter.load_state_dict(self.adapter)
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {self.path}: {exc}") from None
        optimizer.load_state_dict(self.optimizer)


def save(
    path: Path,
    *,
    adapter,
    optimizer: torch.optim.Optimizer,
    cfg: TrialConfig,
    step: int,
    budget_steps: int,
    data: DataPosition,
    schedule: Mapping[str, Any],
    train_loss_curve: list,
    val_perplexity_curve: list,
) -> None:
    """Write the checkpoint of a trial that reached ``step`` of ``budget_steps``; ``data.consumed`` counts up to there."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / META).unlink(missing_ok=True)
    weights = {k: v.cpu().contiguous() for k, v in adapter.state_dict().items()}
    _replace(path / ADAPTER, lambda tmp: save_file(weights, str(tmp)))
    _replace(path / STATE, lambda tmp: torch.save({"optimizer": optimizer.state_dict()}, tmp))
    genes = cfg.as_dict()
    meta = {
        "format": FORMAT,
        "step": step,
        "budget_steps": budget_steps,
        "data": asdict(data),
        "schedule": dict(schedule),
        "train_loss_curve": train_loss_curve,
        "val_perplexity_curve": val_perplexity_curve,
        "structural": {k: genes[k] for k in sorted(STRUCTURAL_GENES)},
        "config": genes,  # for people reading it; resuming uses only the structural part
    }
    _replace(path / META, lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))


def load(path: Path) -> Checkpoint:
    """Read a checkpoint; CheckpointError naming ``path`` when it is missing or unreadable."""
    path = Path(path)
    if not (path / META).is_file():
        raise CheckpointError(f"no checkpoint at {path} ({META} is missing)")
    try:
        from safetensors.torch import load_file

        meta = json.loads((path / META).read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, this fitness reads format {FORMAT}")
        state = torch.load(path / STATE, weights_only=True)
        return Checkpoint(
            path=path,
            step=int(meta["step"]),
            budget_steps=int(meta["budget_steps"]),
            data=DataPosition(**meta["data"]),
            train_loss_curve=meta["train_loss_curve"],
            val_perplexity_curve=meta["val_perplexity_curve"],
            structural=meta["structural"],
            adapter=load_file(str(path / ADAPTER)),
            optimizer=state["optimizer"],
        )
    except Exception as exc:  # any damage reads as one clear failure naming the checkpoint
        raise CheckpointError(f"checkpoint {path} is unreadable: {type(exc).__name__}: {exc}".splitlines()[0]) from exc


def _replace(target: Path, write) -> None:
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    write(staging)
    staging.replace(target)
