"""The QLoRA fitness's folders are layers: the base model, then data, then memory, then
training, then the worker that runs trials; no folder imports one above it (lazy imports count too).
Each reads its own slice of the settings (its ``settings.py``), built by ``spec.py``: of the
modules beside the folders, the layers import only the genes. ``export/`` (the best config as
a trainer's files) sits with the modules beside the folders, above the layers."""

from __future__ import annotations

import ast
from pathlib import Path

QLORA = Path(__file__).resolve().parents[3] / "fitness" / "qlora"
ORDER = ["base", "data", "memory", "training", "worker"]  # bottom first; the top-level modules may use all
SHARED = {"genes"}  # the one top-level module below the layers: what a trial's genes are


def _imported(path: Path) -> set[str]:
    """The names right under ``fitness.qlora`` that ``path`` imports: folders and top-level modules."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fitness.qlora."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.ImportFrom) and node.module == "fitness.qlora":
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("fitness.qlora.")}
    return found


def _layer_modules():
    for folder in ORDER:
        for path in sorted((QLORA / folder).glob("*.py")):
            yield folder, path


def test_no_folder_imports_a_folder_above_it():
    upward = []
    for folder, path in _layer_modules():
        above = {f for f in _imported(path) & set(ORDER) if ORDER.index(f) > ORDER.index(folder)}
        upward += [f"{folder}/{path.name} imports {f}" for f in sorted(above)]
    assert not upward, "\n".join(upward)


def test_the_layers_read_their_settings_not_the_spec():
    """``QLoRASpec`` (and the fitness, the plan, the exports) stay above the layers."""
    beside = []
    for folder, path in _layer_modules():
        top = _imported(path) - set(ORDER) - SHARED
        beside += [f"{folder}/{path.name} imports {name}" for name in sorted(top)]
    assert not beside, "\n".join(beside)


def test_the_genes_import_no_layer_nor_the_spec():
    assert not _imported(QLORA / "genes.py")


def test_the_fitness_never_imports_deap():
    for path in (QLORA.parent).rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        assert not any(name.split(".")[0] == "deap" for name in names), path
