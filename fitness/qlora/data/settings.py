"""What the data layer reads of the ``fitness:`` section: the data, its validation set, its record fields.

Built from :class:`~fitness.qlora.spec.QLoRASpec` (``data_settings``), which checks each key;
nothing in this folder reads the spec itself. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

from fitness.qlora.data.records import Fields

DEFAULT_DATA = "pydoc"


@dataclass(frozen=True)
class DataSettings:
    """``fitness.data``, ``validation_fraction``, ``validation_data``, ``data_split``, ``validation_split``,
    ``data_subset``, and the four ``*_field`` keys as :class:`Fields` (their defaults are the spec's)."""

    data: str
    validation_fraction: float
    validation_data: str | None
    data_split: str | None
    validation_split: str | None
    data_subset: str | None
    fields: Fields
