"""Measured peaks and speeds per cohort shape, kept in the cache dir, that correct the memory estimate. No torch.

One JSON file per (model identity, device kind) under ``<cache>/memory/``. Each record is one
cohort composition (its trials' ``TrialShape.key()`` joined): the estimated and the measured
MB over the resident base (the largest measured so far: a peak that happened can happen
again), and the training and validation tokens/s it ran at. A later estimate of the same
composition is scaled by its measured/estimated ratio; one never measured takes the ratio of
its nearest neighbour (same sequence length, checkpointing and dtype, closest estimate). A
file that cannot be read is ignored (and replaced at the next record), never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fitness.qlora.memory.footprint import TrialShape

log = logging.getLogger(__name__)

VERSION = 1
RATIO_BOUNDS = (0.25, 4.0)  # a ratio outside these is a broken measurement, not a correction


def composition(trials: Sequence[TrialShape]) -> str:
    """The record key of a cohort: its trials' keys, sorted (a cohort of one: the trial's key)."""
    return "|".join(sorted(t.key() for t in trials))


@dataclass
class Calibration:
    """The records of one model on one device kind; ``path`` None keeps them in memory only."""

    path: Path | None
    model: str = ""
    device: str = ""
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, cache_root: Path, model: str, device: str) -> Calibration:
        path = cache_root / "memory" / f"{hashlib.sha256(f'{model}|{device}'.encode()).hexdigest()[:24]}.json"
        empty = cls(path, model, device)
        if not path.is_file():
            return empty
        try:
            saved = json.loads(path.read_text())
            records = saved["shapes"]
            sound = saved["version"] == VERSION and isinstance(records, dict) and all(map(_sound, records.values()))
        except (OSError, ValueError, KeyError, TypeError):
            sound = False
        if not sound:
            log.warning("ignoring the unreadable memory calibration %s (it is rewritten at the next trial)", path)
            return empty
        return cls(path, model, device, records)

    def ratio(self, trials: Sequence[TrialShape], estimated_mb: float) -> tuple[float, str | None]:
        """measured / estimated for this cohort: its own record's, else its nearest neighbour's, else 1.
        Also the key of the record it came from (None: uncalibrated)."""
        key = composition(trials)
        if key in self.records:
            return _ratio(self.records[key]), key
        first = trials[0]
        near = [
            (abs(math.log(max(r["estimated_mb"], 1e-3) / max(estimated_mb, 1e-3))), k)
            for k, r in self.records.items()
            if (r["seq_length"], r["checkpointing"], r["dtype_bytes"])
            == (first.seq_length, first.checkpointing, first.dtype_bytes)
        ]
        if not near:
            return 1.0, None
        _, nearest = min(near)
        return _ratio(self.records[nearest]), nearest

    def record(
        self,
        trials: Sequence[TrialShape],
        *,
        estimated_mb: float,
        measured_mb: float,
        train_tokens_per_s: float | None,
        eval_tokens_per_s: float | None,
    ) -> None:
        """Keep one cohort's measured peak and speeds (the larger peak when it was measured before)."""
        if not (math.isfinite(measured_mb) and measured_mb > 0 and estimated_mb > 0):
            return
        key = composition(trials)
        old = self.records.get(key, {})
        first = trials[0]
        self.records[key] = {
            "estimated_mb": estimated_mb,
            "measured_mb": max(measured_mb, old.get("measured_mb", 0.0)),
            "train_tokens_per_s": train_tokens_per_s or old.get("train_tokens_per_s"),
            "eval_tokens_per_s": eval_tokens_per_s or old.get("eval_tokens_per_s"),
            "seq_length": first.seq_length,
            "checkpointing": first.checkpointing,
            "dtype_bytes": first.dtype_bytes,
            "tokens": sum(t.tokens for t in trials),
            "trials": len(trials),
            "time": time.time(),
        }
        self._save()

    def speeds(self) -> list[dict[str, Any]]:
        """The records that measured tokens/s, for ``evo plan``'s wall-time estimate."""
        return [r for r in self.records.values() if r.get("train_tokens_per_s")]

    def _save(self) -> None:
        if self.path is None:
            return
        body = {"version": VERSION, "model": self.model, "device": self.device, "shapes": self.records}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            staging = self.path.with_suffix(f".{os.getpid()}.tmp")
            staging.write_text(json.dumps(body, indent=1, sort_keys=True))
            staging.replace(self.path)  # whole or not at all: another worker may read it meanwhile
        except OSError as exc:  # a read-only cache: calibrated for this worker's lifetime only
            log.warning("could not write the memory calibration %s: %s", self.path, exc)


def _sound(record: Any) -> bool:
    try:
        numbers = [record["estimated_mb"], record["measured_mb"], record["seq_length"], record["dtype_bytes"]]
        return all(isinstance(n, (int, float)) and n > 0 for n in numbers) and isinstance(record["checkpointing"], bool)
    except (KeyError, TypeError):
        return False


def _ratio(record: dict[str, Any]) -> float:
    low, high = RATIO_BOUNDS
    return min(high, max(low, record["measured_mb"] / record["estimated_mb"]))
