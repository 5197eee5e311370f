"""Reading a run config from YAML, with ``KEY=VALUE`` overrides from the command line."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from evo.config._run import RunConfig, parse_config
from evo.trial import ConfigError

__all__ = ["apply_override", "load_config", "read_yaml", "safe_load"]

MAX_NODES = 100_000  # a run config has a few hundred; past this, aliases are expanding into a bomb


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader (no Python tags), reading ``1e-5`` as the number users mean:
    YAML 1.1 wants ``1.0e-5`` and would hand over the string '1e-5'. A key given twice in
    one mapping, at any depth, is refused: PyYAML would keep the last one silently (a
    merge key ``<<`` overridden by an explicit one is YAML's own rule, and allowed)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise ConfigError(
                        f"YAML line {line}: key {key!r} given twice in one mapping (also line {seen[key]}); "
                        "the last would silently win"
                    )
                seen[key] = line
            except TypeError:  # an unhashable key: PyYAML's own error says so
                continue
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def safe_load(text: str) -> Any:
    """Parse YAML as :func:`yaml.safe_load` does, refusing documents whose aliases expand
    past ``MAX_NODES`` nodes (a "billion laughs") or into themselves."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_NODES:
            raise ConfigError(f"YAML: aliases expand to more than {MAX_NODES:,} values; refused")
        return loader.construct_document(node)
    except RecursionError:
        raise ConfigError("YAML: nested or aliased too deeply to be a run config; refused") from None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Values ``node`` holds once every alias is expanded; an alias of itself counts as a bomb."""
    known = sizes.get(id(node))
    if known is not None:
        if known < 0:
            return MAX_NODES + 1  # an alias inside what it names: infinite
        return known
    sizes[id(node)] = -1
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    sizes[id(node)] = min(size, MAX_NODES + 1)
    return sizes[id(node)]


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to a raw config in place."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r}: expected KEY=VALUE, e.g. evolution.generations=3")
    path, _, text = assignment.partition("=")
    keys = [k for k in path.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"override {assignment!r}: empty key")
    try:
        value = safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {path}: value is not valid YAML ({exc.__class__.__name__})") from None
    node = raw
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {path}: {key} is not a mapping")
        node = child
    node[keys[-1]] = value


def read_yaml(path: Path | str) -> Any:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    if not path.is_file():  # reading a named pipe would wait for a writer forever
        raise ConfigError(f"{path}: is not a regular file (a named pipe, a device or a socket)")
    try:
        return safe_load(path.read_text())
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{where}: {getattr(exc, 'problem', exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None


def load_config(path: Path | str, overrides: Sequence[str] = ()) -> RunConfig:
    raw = read_yaml(path)
    if raw is None:
        raise ConfigError(f"{path}: the config file is empty")
    if isinstance(raw, dict):
        for assignment in overrides:
            apply_override(raw, assignment)
    return parse_config(raw)
