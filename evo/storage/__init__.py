"""Everything a run keeps: run.db (schema, records, the store), the driver lock, the
checkpoint and artifact files beside it, and the guard every command that writes a file
goes through. Import from here; the modules are private."""

from __future__ import annotations

from evo.storage._files import RunFiles
from evo.storage._guard import (
    RUN_FILES,
    RUN_FOLDERS,
    check_new_run,
    check_output,
    claim_run_dir,
    holds_run_database,
    run_holding,
    write_output,
)
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
from evo.storage._sqlite import DiskFull, is_disk_full
from evo.storage._store import RunStore

__all__ = [
    "BASELINE_GENERATION",
    "CACHEABLE_FAILURES",
    "GENOME_FORMAT",
    "IMPORTED_GENERATION",
    "RUN_FILES",
    "RUN_FOLDERS",
    "SCHEMA_VERSION",
    "DiskFull",
    "IndividualRecord",
    "RunDirInUse",
    "RunDirLock",
    "RunFiles",
    "RunStore",
    "StoreError",
    "TrialRecord",
    "check_new_run",
    "claim_run_dir",
    "check_output",
    "decode_genome",
    "encode_genome",
    "holds_run_database",
    "is_disk_full",
    "run_holding",
    "write_output",
]
