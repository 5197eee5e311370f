"""The docs that are generated from the code are up to date."""

from __future__ import annotations

from pathlib import Path

from evo.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_the_config_reference_is_the_one_the_settings_write(tmp_path):
    assert main(["reference", "--out", str(tmp_path / "config.md")]) == 0
    fresh = (tmp_path / "config.md").read_text()
    assert "| `surrogate_gamma` | 0.1 |" in fresh and "| `cohort` | auto |" in fresh
    assert (ROOT / "docs" / "config.md").read_text() == fresh, "run: evo reference --out docs/config.md"
