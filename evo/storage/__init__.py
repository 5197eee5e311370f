"""Everything a run keeps: run.db (schema, records, the store), the driver lock, and
the checkpoint and artifact files beside it. Import from here; the modules are private."""

from __future__ import annotations

from evo.storage._files import RunFiles
from evo.storage._lock import RunDirInUse, RunDirLock
from evo.storage._records import (
    BASELINE_GENERATION,
    CACHEABLE_FAILURES,
    GENOME_FORMAT,
    IMPORTED_GENERATION,
    IndividualRecord,
    StoreError,
    TrialRecord,
    decode_genome,
    encode_genome,
)
from evo.storage._schema import SCHEMA_VERSION
from evo.storage._store import RunStore

__all__ = [
    "BASELINE_GENERATION",
    "CACHEABLE_FAILURES",
    "GENOME_FORMAT",
    "IMPORTED_GENERATION",
    "SCHEMA_VERSION",
    "IndividualRecord",
    "RunDirInUse",
    "RunDirLock",
    "RunFiles",
    "RunStore",
    "StoreError",
    "TrialRecord",
    "decode_genome",
    "encode_genome",
]
