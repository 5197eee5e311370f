"""The benchmarks' layout: experiments/ holds thin scripts on evobench, evobench reaches the
engine through its public API only, and nothing below imports the benchmarks.

Public means ``evo`` itself and the packages without an underscore (``evo.trial``,
``evo.config``, ``evo.storage``, ...): a module whose dotted name has a part starting with
``_`` is internal. Lazy imports inside functions count, as in tests/evo/test_layers.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS, EVOBENCH = ROOT / "experiments", ROOT / "evobench"
CHECKED = [*EXPERIMENTS.rglob("*.py"), *EVOBENCH.rglob("*.py"), *Path(__file__).parent.rglob("*.py")]
SEARCH_PATH = "sys" + ".path"  # spelt apart, so that this file passes its own check


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if alias.name.startswith("_")}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def test_nothing_imports_the_engine_internals():
    private = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in CHECKED
        for module in sorted(imported_modules(path))
        if module.split(".")[0] == "evo" and any(part.startswith("_") for part in module.split(".")[1:])
    ]
    assert not private, "\n".join(private)


def test_nothing_edits_the_import_path():
    """The scripts import evobench as an installed package: no path is patched to find it."""
    editing = [str(path.relative_to(ROOT)) for path in CHECKED if SEARCH_PATH in path.read_text()]
    assert not editing, f"mention {SEARCH_PATH}: {editing}"


def test_scripts_are_thin_and_modules_small():
    long_scripts = [(p.name, n) for p in EXPERIMENTS.glob("*.py") if (n := len(p.read_text().splitlines())) >= 250]
    assert not long_scripts, f"scripts of 250 lines or more (move the logic into evobench): {long_scripts}"
    modules = [(str(p.relative_to(ROOT)), len(p.read_text().splitlines())) for p in EVOBENCH.rglob("*.py")]
    assert modules and not [m for m in modules if m[1] >= 400], f"evobench modules of 400 lines or more: {modules}"


def test_the_tool_never_imports_the_benchmarks():
    upward = [
        f"{path.relative_to(ROOT)} imports {module}"
        for package in ("evo", "fitness")
        for path in (ROOT / package).rglob("*.py")
        for module in sorted(imported_modules(path))
        if module.split(".")[0] in ("evobench", "experiments")
    ]
    assert not upward, "\n".join(upward)


def test_the_benchmarks_never_import_the_tests():
    """A package cannot depend on the tests: a wheel or a lent machine's copy may not hold them."""
    into_tests = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in [*EXPERIMENTS.rglob("*.py"), *EVOBENCH.rglob("*.py")]
        for module in sorted(imported_modules(path))
        if module.split(".")[0] == "tests"
    ]
    assert not into_tests, "\n".join(into_tests)
