"""The engine's import graph: no module imports a module of a layer above it.

Layers, bottom first. A module may import its own layer and any layer below; lazy
imports inside functions and imports for type checking count too, so the graph a
reader sees is the graph that runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

EVO = Path(__file__).resolve().parents[2] / "evo"

LAYERS = [
    ("contract", ["evo._errors", "evo._gene_decl", "evo.trial", "evo.storage._lock"]),
    ("values", ["evo.config._fields", "evo._space", "evo.storage._records"]),
    (
        "settings and pure operators",
        [
            "evo.config._evolution",
            "evo.config._executor",
            "evo.config._run_budget",
            "evo._operators",
            "evo._surrogate",
            "evo._deap",
            "evo._stats",
            "evo.storage._schema",
        ],
    ),
    (
        "config and storage",
        [
            "evo.config",
            "evo.config._run",
            "evo.config._yaml",
            "evo.config._reference",
            "evo.storage",
            "evo.storage._store",
            "evo.storage._files",
        ],
    ),
    (
        "search parts and executors",
        [
            "evo._breeding",
            "evo._pruning",
            "evo._spending",
            "evo._observers",
            "evo._optuna_mirror",
            "evo._study_union",
            "evo._warm_start",
            "evo._rundata",
            "evo._preflight",
            "evo.executors",
            "evo.executors._local",
            "evo.executors._devices",
            "evo.executors._ray",
        ],
    ),
    ("evaluation", ["evo._evaluation"]),
    ("results", ["evo._results", "evo._importance"]),
    (
        "strategies",
        [
            "evo.strategies",
            "evo.strategies._context",
            "evo.strategies._generational",
            "evo.strategies._multi_fidelity",
            "evo.strategies._pbt",
            "evo.strategies._steady_state",
        ],
    ),
    (
        "runs and what reads them",
        [
            "evo._api",
            "evo._plan",
            "evo._progress",
            "evo._trackers",
            "evo.plots",
            "evo.plots._figures",
            "evo.plots._compare",
            "evo.plots._importance_figure",
            "evo._report",
            "evo._dashboard",
            "evo._optuna_export",
        ],
    ),
    ("entry points", ["evo._cli_parser", "evo.cli", "evo"]),
]
LAYER = {module: rank for rank, (_, modules) in enumerate(LAYERS) for module in modules}


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


def test_every_engine_module_has_a_layer():
    modules = {module_name(p) for p in EVO.rglob("*.py")}
    assert modules == set(LAYER), f"unplaced: {sorted(modules - set(LAYER))}; gone: {sorted(set(LAYER) - modules)}"


def test_no_module_imports_a_layer_above_it():
    upward = []
    for path in EVO.rglob("*.py"):
        importer = module_name(path)
        for imported in imports_of(path):
            if LAYER[imported] > LAYER[importer]:
                upward.append(
                    f"{importer} ({LAYERS[LAYER[importer]][0]}) imports {imported} ({LAYERS[LAYER[imported]][0]})"
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
