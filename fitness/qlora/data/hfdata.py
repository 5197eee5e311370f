"""Hugging Face datasets as records: ``save_to_disk`` folders, .parquet / .arrow / .csv files
and hub ids, through the optional ``datasets`` library. No torch here.

Only the columns a document can come from are read. A dataset with splits gives the one
asked for (``data_split`` default ``train``, ``validation_split`` default ``validation``),
or its only split; anything else is a ConfigError naming the splits it has. Local files
are converted once into ``CACHE/datasets`` (the library's own cache, not ~/.cache).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evo.trial import ConfigError

FILE_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv"}  # suffix -> datasets builder
INSTALL_HINT = "pip install 'evo-qlora[data]' (the datasets library)"


def is_saved_dataset(path: Path) -> bool:
    """A folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def dataset_rows(
    source: str,
    *,
    kind: str,
    split: str | None,
    default_split: str,
    columns: tuple[str, ...],
    key: str,
    split_key: str,
    subset: str | None = None,
    cache_dir: Path | None = None,
) -> tuple[Iterator[dict[str, Any]], int, str]:
    """``(rows, count, split name)`` of one split; ``kind`` is ``disk``, ``hub`` or a FILE_BUILDERS value.

    ``split`` None takes ``default_split``, or the dataset's only split. ``key`` / ``split_key``
    are the spec keys errors name.
    """
    datasets = _library(key, source)
    if kind == "hub":  # asked first, in seconds: load_dataset retries an unreachable hub for ~25 s
        _check_hub(datasets, source, key=key, subset=subset, split=split, split_key=split_key, cache_dir=cache_dir)
    try:
        if kind == "disk":
            loaded = datasets.load_from_disk(source)
        elif kind == "hub":
            loaded = datasets.load_dataset(source, subset, cache_dir=_str(cache_dir))
        else:
            loaded = datasets.load_dataset(kind, data_files=source, cache_dir=_str(cache_dir))
    except Exception as exc:  # the library's errors are many; the user needs the first line of one
        what = "the hub dataset" if kind == "hub" else "the dataset"
        raise ConfigError(f"fitness.{key}: cannot load {what} {source}: {_first_line(exc)}") from None
    dataset, name = _pick_split(loaded, split, default_split, key=split_key, source=source, kind=kind)
    present = [c for c in columns if c in dataset.column_names]
    if not present:
        raise ConfigError(
            f"fitness.{key}: {source} has columns {dataset.column_names}, none of {list(columns)} "
            "(map yours with text_field, messages_field, prompt_field, completion_field)"
        )
    return iter(dataset.select_columns(present)), len(dataset), name


def _pick_split(loaded: Any, split: str | None, default: str, *, key: str, source: str, kind: str) -> tuple[Any, str]:
    """The split asked for. A file has no splits of its own (its builder names its rows
    ``train``), nor has a saved single Dataset: naming a split for either is refused."""
    has_splits = hasattr(loaded, "keys") and kind in ("disk", "hub")
    if not has_splits:
        if split is not None:
            raise ConfigError(f"fitness.{key}: {source} has no splits, so none named {split!r}")
        return (loaded["train"] if hasattr(loaded, "keys") else loaded), "-"
    wanted = split if split is not None else default
    if wanted in loaded:
        return loaded[wanted], wanted
    if split is None and len(loaded) == 1:
        only = next(iter(loaded))
        return loaded[only], only
    raise ConfigError(f"fitness.{key}: {source} has no split {wanted!r} (it has: {', '.join(loaded)})")


def _check_hub(
    datasets: Any, repo: str, *, key: str, subset: str | None, split: str | None, split_key: str, cache_dir: Path | None
) -> None:
    """Offline, the datasets cache must hold it (load_dataset reads nothing else then); online, ask the hub."""
    from datasets.naming import camelcase_to_snakecase

    from fitness.qlora.base import hub

    root = Path(cache_dir or datasets.config.HF_DATASETS_CACHE).expanduser()
    *owner, name = repo.split("/")
    folder = root / "___".join([*owner, camelcase_to_snakecase(name)])  # as datasets' CachedDatasetModuleFactory looks
    cached = any(p.is_dir() for p in folder.glob("*/*/*"))
    if not datasets.config.HF_HUB_OFFLINE:
        hub.check_dataset(repo, key=key, subset=subset, split=split, split_key=split_key, cached=cached)
    elif not cached:
        raise ConfigError(
            f"fitness.{key}: cannot load the hub dataset {repo}: HF_HUB_OFFLINE is set and the datasets cache "
            f"({root}) has no copy of it: load it once where the hub is reachable, or use a local copy "
            "(a save_to_disk folder or data files)"
        )


def _library(key: str, source: str) -> Any:
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"fitness.{key}: reading {source} needs {INSTALL_HINT}") from None
    datasets.disable_progress_bars()  # one line per problem on stderr, and quiet runs
    datasets.logging.set_verbosity_error()
    return datasets


def _str(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def _first_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
