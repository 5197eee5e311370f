"""Several Optuna storages read as one, so one optuna-dashboard shows several runs' journals.

Each run keeps its own journal (``RUN_DIR/optuna.journal``); optuna-dashboard serves one
storage. ``StudyUnion`` numbers the studies and trials of ``n`` storages apart: an id ``i``
of storage ``k`` is ``i * n + k`` here, so every call goes to the storage that holds the
id, unchanged, and reads stay live (each journal is read again as its run writes it).
Writes the dashboard makes (notes, user attributes) go to the run's own journal; making
a study is refused: a study here is a run, made by its run.
"""

from __future__ import annotations

import copy
from collections.abc import Container, Sequence
from typing import Any

from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState


class StudyUnion(BaseStorage):
    """The studies of ``storages`` (two or more), with their ids spread apart (see the module)."""

    def __init__(self, storages: Sequence[BaseStorage]):
        self.storages = list(storages)

    # -- ids -------------------------------------------------------------------------------
    def _split(self, some_id: int) -> tuple[BaseStorage, int]:
        return self.storages[some_id % len(self.storages)], some_id // len(self.storages)

    def _join(self, inner_id: int, storage: BaseStorage) -> int:
        return inner_id * len(self.storages) + self.storages.index(storage)

    def _trial(self, trial: FrozenTrial, storage: BaseStorage) -> FrozenTrial:
        out = copy.copy(trial)  # shallow: the storage's own object keeps its id
        out._trial_id = self._join(trial._trial_id, storage)
        return out

    # -- studies ---------------------------------------------------------------------------
    def create_new_study(self, directions: Sequence[StudyDirection], study_name: str | None = None) -> int:
        raise NotImplementedError("evo dashboard shows runs; a new study is a new run (evo run)")

    def delete_study(self, study_id: int) -> None:
        storage, inner = self._split(study_id)
        storage.delete_study(inner)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        storage, inner = self._split(study_id)
        storage.set_study_user_attr(inner, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        storage, inner = self._split(study_id)
        storage.set_study_system_attr(inner, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        for storage in self.storages:
            try:
                return self._join(storage.get_study_id_from_name(study_name), storage)
            except KeyError:
                continue
        raise KeyError(f"no study named {study_name!r}")

    def get_study_name_from_id(self, study_id: int) -> str:
        storage, inner = self._split(study_id)
        return storage.get_study_name_from_id(inner)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        storage, inner = self._split(study_id)
        return storage.get_study_directions(inner)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        storage, inner = self._split(study_id)
        return storage.get_study_user_attrs(inner)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        storage, inner = self._split(study_id)
        return storage.get_study_system_attrs(inner)

    def get_all_studies(self) -> list[FrozenStudy]:
        studies = []
        for storage in self.storages:
            for study in storage.get_all_studies():
                study = copy.copy(study)
                study._study_id = self._join(study._study_id, storage)
                studies.append(study)
        return studies

    # -- trials ----------------------------------------------------------------------------
    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        storage, inner = self._split(study_id)
        return self._join(storage.create_new_trial(inner, template_trial), storage)

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float, distribution: Any) -> None:
        storage, inner = self._split(trial_id)
        storage.set_trial_param(inner, param_name, param_value_internal, distribution)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        storage, inner = self._split(study_id)
        return self._join(storage.get_trial_id_from_study_id_trial_number(inner, trial_number), storage)

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        storage, inner = self._split(trial_id)
        return storage.set_trial_state_values(inner, state, values)

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        storage, inner = self._split(trial_id)
        storage.set_trial_intermediate_value(inner, step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        storage, inner = self._split(trial_id)
        storage.set_trial_user_attr(inner, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        storage, inner = self._split(trial_id)
        storage.set_trial_system_attr(inner, key, value)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        storage, inner = self._split(trial_id)
        return self._trial(storage.get_trial(inner), storage)

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        storage, inner = self._split(study_id)
        return [self._trial(t, storage) for t in storage.get_all_trials(inner, deepcopy=deepcopy, states=states)]
