"""The hub, asked before a run starts: a model's config.json, a dataset's existence. No torch here.

huggingface_hub's own lookups retry a failing connection for ~25 s (and each trial's
``from_pretrained`` did it again, ~48 s a trial); here each question is one request with a
short timeout and no retries, or the local cache when ``HF_HUB_OFFLINE`` is set. A repo
that is missing, gated or out of reach is one ConfigError naming the key, the cause and
the fix. huggingface_hub reads HF_ENDPOINT, HF_HUB_OFFLINE, HF_HOME and HF_TOKEN when it is
imported, as the worker's copy of it does: both see the same hub.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evo.trial import ConfigError
from fitness.qlora.base.source import ModelSource, converted_gguf_dir

HUB_TIMEOUT_S = 5.0  # per request; a healthy hub answers a HEAD in well under a second
CONFIG_FILE = "config.json"
DATASET_CARD = "README.md"  # every dataset repo has one or answers EntryNotFound; datasets asks for it first
WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # each possibly sharded: NAME.index.json lists the shards
LOGIN = "log in (hf auth login, or set HF_TOKEN)"
_HTTP_CLIENTS = ("httpx", "httpx2", "httpcore", "requests", "urllib3", "ssl", "socket")  # their errors: no answer


def find_model_config(source: ModelSource, cache_root: Path) -> Path | None:
    """A hub model's config.json, downloaded into the hub cache, or found there when offline.

    None for a GGUF repo (its config is inside the .gguf file, which is only checked to
    exist). Offline, the weights must be cached too: the worker loads them from there.
    ConfigError names ``fitness.model`` (``fitness.gguf_file`` for a file the repo lacks).
    """
    from huggingface_hub import constants, hf_hub_download

    repo = source.name_or_path
    _check_id(repo, "model", "model")
    if constants.HF_HUB_OFFLINE:
        return _cached_model(source, cache_root)
    try:
        _head(repo, source.gguf_file or CONFIG_FILE, "model")
        return None if source.gguf_file else Path(hf_hub_download(repo, CONFIG_FILE, etag_timeout=HUB_TIMEOUT_S))
    except Exception as exc:
        raise ConfigError(_model_problem(exc, source)) from None


def check_dataset(repo: str, *, key: str, subset: str | None, split: str | None, split_key: str, cached: bool) -> None:
    """Online: the hub dataset exists and this user may read it; a named ``subset`` and
    ``split`` are among those its card lists (when it lists them: the card is the only
    cheap answer). ``cached``: whether the datasets cache holds it, for the fix to suggest.
    ``key`` / ``split_key`` are the spec keys errors name."""
    from huggingface_hub.errors import EntryNotFoundError

    _check_id(repo, key, "dataset")
    try:
        _head(repo, DATASET_CARD, "dataset")
    except EntryNotFoundError:
        pass  # the repo is there, without a card: nothing more to check cheaply
    except Exception as exc:
        cause = _problem(
            exc, "dataset", repo, cached=cached, local="a local copy (a save_to_disk folder or data files)"
        )
        raise ConfigError(f"fitness.{key}: cannot load the hub dataset {repo}: {cause}") from None
    if subset is None and split is None:
        return
    listed = _listed_configs(repo)
    if not listed:
        return
    if subset is not None and subset not in listed:
        raise ConfigError(f"fitness.data_subset: {repo} has no configuration {subset!r} (it has: {', '.join(listed)})")
    defaults = [name for name, (is_default, _) in listed.items() if is_default] or [
        name for name in listed if name == "default" or len(listed) == 1
    ]
    config = subset if subset is not None else (defaults[0] if defaults else None)
    splits = listed[config][1] if config is not None else ()
    if split is not None and splits and split not in splits:
        raise ConfigError(
            f"fitness.{split_key}: {repo} [{config}] has no split {split!r} (it has: {', '.join(splits)})"
        )


def _check_id(repo: str, key: str, kind: str) -> None:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError as exc:
        raise ConfigError(f"fitness.{key}: {repo} is neither a local path nor a hub {kind} id ({_line(exc)})") from None


def _head(repo: str, filename: str, repo_type: str) -> None:
    """One HEAD request: raises what huggingface_hub raises (RepositoryNotFoundError, ...)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo, filename, repo_type=repo_type)
    no_retry = (
        {"retry_on_errors": False} if "retry_on_errors" in inspect.signature(get_hf_file_metadata).parameters else {}
    )
    get_hf_file_metadata(url, timeout=HUB_TIMEOUT_S, **no_retry)  # older releases never retried a HEAD


def _model_problem(exc: Exception, source: ModelSource) -> str:
    from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError

    repo = source.name_or_path
    if isinstance(exc, EntryNotFoundError):
        if source.gguf_file:
            return f"fitness.gguf_file: the hub model {repo} has no file {source.gguf_file}"
        return f"fitness.model: the hub model {repo} has no config.json (not a transformers model; a GGUF repo needs fitness.gguf_file)"
    cause = _problem(exc, "model", repo, cached=_model_is_cached(source), local="a local directory")
    if isinstance(exc, RepositoryNotFoundError) and not isinstance(exc, GatedRepoError):
        cause = f"no local path {repo} exists, and {cause}"
    return f"fitness.model: {cause}"


def _problem(exc: Exception, kind: str, repo: str, *, cached: bool, local: str) -> str:
    """What went wrong asking the hub about ``repo``, and what to do: one line."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        DisabledRepoError,
        FileMetadataError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    page = f"{constants.ENDPOINT}/{'datasets/' if kind == 'dataset' else ''}{repo}"
    offline_fix = (
        "set HF_HUB_OFFLINE=1 to use the copy in the cache"
        if cached
        else f"use {local}, or download it where the hub is reachable and set HF_HUB_OFFLINE=1"
    )
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, GatedRepoError):
        if status == 403:  # a token was sent: its account has not been granted access
            return f"{repo} is gated and your token's account has no access yet: accept its terms at {page}"
        return f"{repo} is gated: accept its terms at {page}, then {LOGIN}"
    if isinstance(exc, RepositoryNotFoundError):
        return f"the hub ({constants.ENDPOINT}) has no {kind} {repo}: check the id, or {LOGIN} if it is private"
    if isinstance(exc, RevisionNotFoundError):
        return f"the hub {kind} {repo} has no revision {constants.DEFAULT_REVISION}"
    if isinstance(exc, DisabledRepoError):
        return f"the hub {kind} {repo} is disabled"
    if isinstance(exc, FileMetadataError):
        return f"{constants.ENDPOINT} does not answer as the hub does (check HF_ENDPOINT and any proxy): {offline_fix}"
    if isinstance(exc, HfHubHTTPError) and status == 401:
        return f"the hub refused the token ({_line(exc)}): {LOGIN} again"
    if isinstance(exc, HfHubHTTPError):
        return f"the hub answered {status} for {repo}: try again later, or {offline_fix}"
    if type(exc).__module__.split(".")[0] in _HTTP_CLIENTS or isinstance(exc, (OSError, TimeoutError)):
        return f"cannot reach the hub at {constants.ENDPOINT} ({_line(exc)}): {offline_fix}"
    return f"cannot ask the hub about {repo} ({_line(exc)}): use {local}"


def _cached_model(source: ModelSource, cache_root: Path) -> Path | None:
    """Offline: the config from the hub cache, once its weights are seen there too."""
    from huggingface_hub import constants

    repo, where = source.name_or_path, f"the hub cache ({constants.HF_HUB_CACHE})"
    fix = (
        f"download it once where the hub is reachable (hf download {repo}), or point fitness.model at a local directory"
    )
    if source.gguf_file:
        if (converted_gguf_dir(source, cache_root) / CONFIG_FILE).is_file() or _cached(repo, source.gguf_file):
            return None
        raise ConfigError(
            f"fitness.model: HF_HUB_OFFLINE is set and {where} has no {source.gguf_file} of {repo}: {fix}"
        )
    config = _cached(repo, CONFIG_FILE)
    if config is None:
        raise ConfigError(f"fitness.model: HF_HUB_OFFLINE is set and {where} has no copy of {repo}: {fix}")
    if not _weights_cached(repo):
        raise ConfigError(
            f"fitness.model: HF_HUB_OFFLINE is set and {where} holds the config of {repo} but not its weights: {fix}"
        )
    return config


def _model_is_cached(source: ModelSource) -> bool:
    """Whether HF_HUB_OFFLINE=1 would find what the worker loads (the converted GGUF copy is not looked for)."""
    if source.gguf_file:
        return _cached(source.name_or_path, source.gguf_file) is not None
    return _cached(source.name_or_path, CONFIG_FILE) is not None and _weights_cached(source.name_or_path)


def _weights_cached(repo: str) -> bool:
    for name in WEIGHTS:
        if _cached(repo, name):
            return True
        index = _cached(repo, f"{name}.index.json")
        if index is not None:
            try:
                shards = set(json.loads(index.read_text())["weight_map"].values())
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return False
            return bool(shards) and all(_cached(repo, str(shard)) for shard in shards)
    return False


def _cached(repo: str, filename: str, repo_type: str = "model") -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, repo_type=repo_type)
    return Path(found) if isinstance(found, str) else None  # not a path: not cached, or cached as missing


def _listed_configs(repo: str) -> dict[str, tuple[bool, tuple[str, ...]]]:
    """``{configuration: (is it the default, its splits)}`` as the card's ``configs`` lists them
    (what the datasets library builds from); empty when the card lists none or can't be read."""
    from huggingface_hub import HfApi

    try:
        card = HfApi().dataset_info(repo, timeout=HUB_TIMEOUT_S).card_data
        entries = card.get("configs") if card is not None else None
    except Exception:  # the card is a courtesy: the datasets library has the last word
        return {}
    listed: dict[str, tuple[bool, tuple[str, ...]]] = {}
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, Mapping) and isinstance(entry.get("config_name"), str):
            listed[entry["config_name"]] = (entry.get("default") is True, _splits(entry.get("data_files")))
    return listed


def _splits(data_files: Any) -> tuple[str, ...]:
    """The splits a config's ``data_files`` names: a path or a list of paths is one ``train`` split."""
    if isinstance(data_files, Mapping):
        return tuple(str(name) for name in data_files)
    if isinstance(data_files, list) and data_files and all(isinstance(f, Mapping) for f in data_files):
        return tuple(dict.fromkeys(str(f["split"]) for f in data_files if "split" in f))
    return ("train",) if isinstance(data_files, (str, list)) and data_files else ()


def _line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0].strip()[:200]}" if lines else type(exc).__name__
