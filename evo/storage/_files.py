"""The run directory's files besides run.db: checkpoints and trial artifacts.

Kept apart from the search strategies so that a strategy only says which checkpoints
it still needs, and the artifact policy is applied in one place:

    RUN_DIR/checkpoints/<trial id>   end states a later trial continues (multi-fidelity, PBT)
    RUN_DIR/trials/<trial id>        a full trial's artifacts while it runs
    RUN_DIR/best/                    under the 'best' policy, the best trial's artifacts

A run kept in memory keeps its checkpoints in a temporary directory and no artifacts.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from evo.storage._records import TrialRecord
from evo.storage._store import RunStore
from evo.trial import Objective

# The values of evo.config.ArtifactPolicy (a str enum, so its members compare equal).
KEEP_BEST, KEEP_ALL, KEEP_NONE = "best", "all", "none"


class RunFiles:
    """Where a run's trials read and write files, and which of them are kept."""

    def __init__(self, store: RunStore, artifacts: str = KEEP_BEST):
        self.store = store
        self.artifacts = artifacts
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    # -- checkpoints --------------------------------------------------------------------
    @property
    def checkpoints(self) -> Path:
        if self.store.run_dir is not None:
            return self.store.run_dir / "checkpoints"
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="evo-checkpoints-")
        return Path(self._scratch.name)

    def checkpoint_dir(self, trial_id: int) -> Path:
        return self.checkpoints / str(trial_id)

    def keep_checkpoints(self, trial_ids: Iterable[int] = ()) -> None:
        """Delete every checkpoint but those of ``trial_ids``: the ones a later trial may
        still continue (this also sweeps those of trials a killed driver left behind)."""
        root = self.checkpoints
        if not root.exists():
            return
        keep = {str(i) for i in trial_ids}
        for path in root.iterdir():
            if path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)
        if self.store.run_dir is not None and not any(root.iterdir()):
            root.rmdir()

    # -- artifacts --------------------------------------------------------------------
    def artifact_dir(self, trial_id: int) -> Path | None:
        """Where a full trial writes its artifacts; None when none are kept."""
        if self.store.run_dir is None or self.artifacts == KEEP_NONE:
            return None
        return self.store.run_dir / "trials" / str(trial_id)

    def keep_artifacts(self, record: TrialRecord, artifact_dir: Path | None, objective: Objective) -> None:
        """Under the 'best' policy only the best trial's artifacts survive, in RUN_DIR/best
        (ranked by ``objective``; meta ``best_artifacts`` names the trial)."""
        run_dir = self.store.run_dir
        if run_dir is None or artifact_dir is None or self.artifacts == KEEP_ALL or not artifact_dir.exists():
            return
        if record.ok and record.full and self._is_new_best(record, objective):
            best_dir = run_dir / "best"
            staging = best_dir.with_name("best.new")
            shutil.rmtree(staging, ignore_errors=True)
            artifact_dir.rename(staging)
            shutil.rmtree(best_dir, ignore_errors=True)
            staging.rename(best_dir)
            self.store.set_meta("best_artifacts", {"trial_id": record.id, "path": str(best_dir.resolve())})
        else:
            shutil.rmtree(artifact_dir, ignore_errors=True)
        parent = artifact_dir.parent
        if parent.exists() and not any(parent.iterdir()):
            parent.rmdir()

    def _is_new_best(self, record: TrialRecord, objective: Objective) -> bool:
        holder = self.store.meta("best_artifacts")
        if holder is None:
            return True
        current = self.store.trial(holder["trial_id"]).values.get(objective.name)
        value = record.values[objective.name]
        return current is None or (value * objective.weight > current * objective.weight)
