"""A fitness that remembers: every result is appended to a JSONL file, keyed by the trial.

Makes a long benchmark on real trials resumable at trial granularity. Every method here
is deterministic given its seed and the values it has seen, so a restarted benchmark asks
for the same trials in the same order; those already in the file answer at once, and the
run carries on training where the stopped one was killed. Trials that write a checkpoint
(Hyperband rungs) always run: the checkpoint is a side effect no cached value gives back.
``replay_only`` refuses to train: a published benchmark's cache then proves that today's
code asks for exactly the trials it recorded. A key covers everything that decides a
result (the fitness's fingerprint, config, seed, budget, fidelity, where it resumes from),
so a changed fitness or config never reads a stale value. Each line also names the
fingerprint it was recorded under, which a replay keys by: it trains nothing, so a machine
whose fitness differs (a CPU that computes in float32 where the recording's had bf16)
still proves which trials the methods ask for.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from evo.trial import FailureReason, FitnessBase, Trial, TrialResult, TrialStatus


def open_cache(path: Path | str) -> dict[str, dict[str, Any]]:
    """The results a cache file holds, by key (none if it does not exist yet); a line cut by a
    kill is skipped and ended, so the next result starts a line of its own. A file that is not
    a trial cache is a ValueError naming it."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: a directory, not a trial-cache file")
    if not path.exists():
        return {}
    text = path.read_text()
    if text and not text.endswith("\n"):
        with path.open("a") as f:
            f.write("\n")
    known = {}
    for number, line in enumerate(text.splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill: that trial runs again
            continue
        if not isinstance(row, dict) or "key" not in row:
            raise ValueError(f"{path}:{number}: not a trial-cache line")
        known[row["key"]] = row
    return known


class CachedFitness(FitnessBase):
    """``fitness``, answering the trials ``path`` holds from it and appending every new result."""

    def __init__(
        self,
        fitness: Any,
        path: Path | str,
        replay_only: bool = False,
        known: dict[str, dict[str, Any]] | None = None,  # open_cache(path), if the caller has it already
    ) -> None:
        self.fitness, self.path, self.replay_only = fitness, Path(path), replay_only
        self.objectives = fitness.objectives
        self.structural_genes, self.genes = fitness.structural_genes, fitness.genes
        self.intermediate_values = fitness.intermediate_values
        self.hits = self.misses = 0
        self._known = open_cache(self.path) if known is None else known
        recorded = {row.get("fingerprint") for row in self._known.values()} - {None}
        self._replayed = recorded.pop() if replay_only and len(recorded) == 1 else None

    def fingerprint(self) -> str:
        return self.fitness.fingerprint()

    def describe(self) -> dict[str, Any]:
        return self.fitness.describe()

    def close(self) -> None:
        self.fitness.close()

    def key(self, trial: Trial) -> str:
        parts = {
            "fitness": self._replayed or self.fitness.fingerprint(),
            "config": trial.config,
            "seed": trial.seed,
            "budget": trial.budget.as_dict(),
            "fidelity": trial.fidelity,
            "resume_from": Path(trial.resume_from).name if trial.resume_from else None,
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def evaluate(self, trial: Trial) -> TrialResult:
        if trial.checkpoint_dir:  # its checkpoint is a side effect a cached answer cannot give back
            return self.fitness.evaluate(trial)
        key = self.key(trial)
        row = self._known.get(key)
        if row is not None:
            self.hits += 1
            return TrialResult(
                TrialStatus(row["status"]),
                row["values"],
                {**row["metrics"], "replayed_seconds": row["seconds"]},
                FailureReason(row["reason"]) if row["reason"] else None,
                row["message"],
            )
        if self.replay_only:
            raise SystemExit(f"{self.path}: trial {trial.trial_id} of this run is not in the cache (--replay-only)")
        self.misses += 1
        started = time.perf_counter()
        result = self.fitness.evaluate(trial)
        row = {
            "key": key,
            "fingerprint": self.fitness.fingerprint(),
            "status": result.status.value,
            "values": dict(result.values),
            "metrics": dict(result.metrics),
            "reason": result.reason.value if result.reason else None,
            "message": result.message,
            "seconds": time.perf_counter() - started,
            "config": trial.config,
        }
        self._known[key] = row
        with self.path.open("a") as f:  # one write per line: a kill leaves at most one partial line
            f.write(json.dumps(row, default=str) + "\n")
        return result
