"""Where experiments/ keeps the run configs, the collected trials and the results.

The benchmarks read the run configs checked in there, so that a number in the README
names the config that produced it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
DATA_DIR = EXPERIMENTS / "data"


def run_config(name: str) -> dict[str, Any]:
    """``experiments/<name>.yaml`` as a mapping, to change before ``evo.parse_config``."""
    return yaml.safe_load((EXPERIMENTS / f"{name}.yaml").read_text())
