"""Every third-party module the code, the benchmarks or the tests import is declared.

A package installed by hand makes a missing requirement invisible where it was installed;
a fresh machine then fails. This reads the imports (with ast, so nothing is imported) and
asks the installed metadata which distribution provides each, then checks that
distribution is required by evo-qlora or its ``test`` extra, directly or through another.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"evo", "fitness", "evobench", "tests", "experiments"}
# Imported only where they are installed (tests skip without them), by design never required:
# they pin other transformers/trl versions (tests/fitness/qlora/export/test_trainers.py), and DEHB
# pins numpy < 2 (evobench/methods/mf_peers.py; its benchmark refuses to start without it). The budget
# benchmark's Syne Tune and NePS peers (the ``peers`` extra: hundreds of MB, kept out of CI's ``test``)
# and YAHPO Gym (pins ConfigSpace <= 0.6.1 and numpy < 2) are refused in one line where missing.
OPTIONAL = {"axolotl", "llamafactory", "dehb", "syne_tune", "neps", "ifbo", "yahpo_gym"}


def _name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _required(dist: str, extras: tuple[str, ...] = ()) -> set[str]:
    """``dist`` and everything it requires (with ``extras``), transitively, as installed."""
    seen, todo = set(), [(dist, extras)]
    while todo:
        name, wanted = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for req in requires:
            marker = req.split(";", 1)[1] if ";" in req else ""
            extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
            if extra and extra.group(1) not in wanted:
                continue
            inner = re.search(r"\[([^\]]+)\]", req.split(";", 1)[0])
            todo.append((_name(req), tuple(e.strip() for e in inner.group(1).split(",")) if inner else ()))
    return seen


def _imports() -> dict[str, Path]:
    found: dict[str, Path] = {}
    local = {p.stem for p in (ROOT / "experiments").glob("*.py")}
    for folder in ("evo", "fitness", "evobench", "experiments", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in FIRST_PARTY | local:
                        found.setdefault(top, path)
    return found


def test_every_imported_module_comes_from_a_declared_distribution():
    declared = _required("evo-qlora", ("test",))
    providers = metadata.packages_distributions()
    missing = []
    for module, where in sorted(_imports().items()):
        if module in OPTIONAL:
            continue
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [])}
        if not dists & declared:
            missing.append(
                f"{module} (imported in {where.relative_to(ROOT)}; from {sorted(dists) or 'nothing installed'})"
            )
    assert not missing, "not declared in pyproject.toml: " + "; ".join(missing)
