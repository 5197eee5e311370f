"""The engine's import graph: each folder of ``evo/`` is a layer, and no module imports a
folder of a layer above its own.

Layers, bottom first, one concern each (docs/architecture.md draws the same picture). A
module may import its own folder and any folder below; lazy imports inside functions and
imports for type checking count too, so the graph a reader sees is the graph that runs.
At ``evo/``'s root sit only the package (its lazy public API), the contract and the errors.
"""

from __future__ import annotations

import ast
from pathlib import Path

EVO = Path(__file__).resolve().parents[2] / "evo"

LAYERS = [
    ("the contract with a fitness, and the errors", ["evo.trial", "evo._declarations", "evo._errors"]),
    ("the search space", ["evo.space"]),
    ("the run directory", ["evo.storage"]),
    ("early stopping", ["evo.early_stopping"]),
    ("the run config", ["evo.config"]),
    ("where trials run", ["evo.executors"]),
    ("the sampler", ["evo.search"]),
    ("evaluating trials", ["evo.evaluation"]),
    ("the Optuna bridge", ["evo.optuna"]),
    ("the strategies", ["evo.strategies"]),
    ("reporting", ["evo.reporting"]),
    ("the way into a run", ["evo.run"]),
    ("the command line", ["evo.cli"]),
    ("the public API", ["evo"]),
]
LAYER = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}


def module_name(path: Path) -> str:
    parts = path.relative_to(EVO.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "evo":
            if node.module == "evo":
                found |= {f"evo.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "evo"}
    return found


def unit_of(module: str) -> str:
    """The layer's unit a module belongs to: its top folder (``evo.reporting.plots._figures``:
    ``evo.reporting``), or the module itself at the root."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and (EVO / parts[1]).is_dir() else module


def test_every_engine_module_has_a_layer():
    units = {unit_of(module_name(p)) for p in EVO.rglob("*.py")}
    assert units == set(LAYER), f"unplaced: {sorted(units - set(LAYER))}; gone: {sorted(set(LAYER) - units)}"


def test_only_the_package_the_contract_and_the_errors_at_the_root():
    root = {p.stem for p in EVO.glob("*.py")}
    assert root == {"__init__", "trial", "_declarations", "_errors"}, sorted(root)


def test_no_module_imports_a_layer_above_it():
    upward = []
    for path in EVO.rglob("*.py"):
        importer = unit_of(module_name(path))
        for imported in map(unit_of, imports_of(path)):
            if LAYER[imported] > LAYER[importer]:
                upward.append(
                    f"{module_name(path)} ({LAYERS[LAYER[importer]][0]}) imports {imported} ({LAYERS[LAYER[imported]][0]})"
                )
    assert not upward, "\n".join(sorted(upward))


def folder_of(module: str) -> str | None:
    """The subpackage a module lives in (``evo.config._run``: ``config``); None at the top."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (EVO / parts[1]).is_dir() else None


def test_folders_are_layers():
    """No two subpackages import each other, even through other folders: a cycle hidden by a
    lazy import is still a cycle."""
    edges: dict[str, set[str]] = {}
    for path in EVO.rglob("*.py"):
        source = folder_of(module_name(path))
        for imported in imports_of(path):
            target = folder_of(imported)
            if source and target and target != source:
                edges.setdefault(source, set()).add(target)

    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(
            nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})) for nxt in edges.get(start, ())
        )

    cycles = sorted(f"{a} -> {b} -> ... -> {a}" for a, targets in edges.items() for b in targets if reaches(b, a))
    assert not cycles, "\n".join(cycles)


def test_no_module_is_over_400_lines():
    for path in [*EVO.rglob("*.py"), *(EVO.parent / "fitness").rglob("*.py")]:
        assert len(path.read_text().splitlines()) <= 400, f"{path} is over 400 lines"


def test_no_strategy_inherits_another():
    for path in (EVO / "strategies").glob("_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                assert not node.bases, f"{path.name}: class {node.name} inherits; share the run context instead"
