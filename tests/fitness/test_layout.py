"""The QLoRA fitness's folders are layers: the base model, then data, then training, then
the worker that runs trials, then the export to trainers; no folder imports one above it (lazy imports count too)."""

from __future__ import annotations

import ast
from pathlib import Path

QLORA = Path(__file__).resolve().parents[2] / "fitness" / "qlora"
ORDER = ["base", "data", "training", "worker", "export"]  # bottom first; the top-level modules may use all


def _imported_folders(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fitness.qlora."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("fitness.qlora.")}
    return found & set(ORDER)


def test_no_folder_imports_a_folder_above_it():
    upward = []
    for folder in ORDER:
        for path in (QLORA / folder).glob("*.py"):
            above = {f for f in _imported_folders(path) if ORDER.index(f) > ORDER.index(folder)}
            upward += [f"{folder}/{path.name} imports {f}" for f in sorted(above)]
    assert not upward, "\n".join(upward)


def test_the_fitness_never_imports_deap():
    for path in (QLORA.parent).rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        assert not any(name.split(".")[0] == "deap" for name in names), path
