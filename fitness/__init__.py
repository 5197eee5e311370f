"""Everything that trains or scores a hyperparameter config.

Each fitness implements :class:`evo.trial.Fitness`. Heavy backends (torch, peft,
bitsandbytes) are imported only when their fitness is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evo.trial import Budget, ConfigError, Fitness, FitnessBase, GeneDecl

if TYPE_CHECKING:
    from evo.trial import Plan

TYPES = ("synthetic", "qlora")


def _fitness_class(kind: Any) -> Any:
    """The class a ``fitness.type`` names, imported only now; None for an unknown type."""
    if kind == "synthetic":
        from fitness.synthetic import SyntheticFitness

        return SyntheticFitness
    if kind == "qlora":
        from fitness.qlora import QLoRAFitness

        return QLoRAFitness
    return None


def config_reference() -> dict[str, tuple[type, Mapping[str, GeneDecl]]]:
    """Each ``fitness.type``'s settings class and the genes it reads, for ``evo reference``.

    The QLoRA genes are those of any model; a run narrows them to its model's (its
    context length, its linear modules)."""
    from fitness.qlora.genes import GENES
    from fitness.qlora.spec import QLoRASpec
    from fitness.synthetic import SyntheticSpec

    return {"qlora": (QLoRASpec, GENES), "synthetic": (SyntheticSpec, GENES)}


def make_fitness(spec: Mapping[str, Any]) -> Fitness:
    """Build the fitness a run config's ``fitness:`` section describes.

    Validates the section (and, for QLoRA, finds the model and data) before any run
    directory is written; raises :class:`ConfigError` naming the culprit.
    """
    kind = spec.get("type")
    cls = _fitness_class(kind)
    if cls is None:
        raise ConfigError(f"fitness.type: unknown fitness {kind!r} (known: {', '.join(TYPES)})")
    fitness: Fitness = cls.from_spec(spec)
    return fitness


def plan_fitness(spec: Mapping[str, Any]) -> Fitness:
    """The fitness ``make_fitness`` builds, for ``evo plan`` to check a run config as ``evo run``
    does, without what only the machine that runs it can tell (a GPU, the hub for a known model)."""
    kind = spec.get("type")
    if kind == "qlora":
        from fitness.qlora import QLoRAFitness

        return QLoRAFitness.for_plan(spec)
    return make_fitness(spec)


def export_sections(spec: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``config`` in the sections the fitness ``spec`` describes exports (``evo best``, the report).

    Does not build the fitness (for QLoRA that finds the model and reads the data). A run
    of a fitness known only by its class name (the Python API) gets the default: one section.
    """
    cls = _fitness_class(spec.get("type")) or FitnessBase
    sections: dict[str, dict[str, Any]] = cls.export_sections(config)
    return sections


def plan(
    spec: Mapping[str, Any], genes: Mapping[str, Sequence[Any]], budget: Budget, baseline: Mapping[str, Any] | None
) -> Plan | None:
    """What a run of the fitness ``spec`` describes would cost (``evo plan``), without building it:
    its class's ``plan``, which checks the spec as building it would; None when it cannot say."""
    cls = _fitness_class(spec.get("type"))
    if cls is None:
        raise ConfigError(f"fitness.type: unknown fitness {spec.get('type')!r} (known: {', '.join(TYPES)})")
    found: Plan | None = cls.plan(spec, genes, budget, baseline)
    return found


EXPORT_FORMATS = ("hf", "trl", "llamafactory", "axolotl")  # hf: export_sections; the rest: trainer files


def export_for_trainer(
    spec: Mapping[str, Any],
    fmt: str,
    *,
    config: Mapping[str, Any],
    adapter_path: str | None,
    environment: Mapping[str, Any],
    out: Path | None,
    notes: Sequence[str] = (),
    trained_steps: int | None = None,
    steps: int | None = None,
    epochs: float | None = None,
    target_version: str | None = None,
    check: str | None = None,
) -> dict[Path, str] | None:
    """``config`` as the files a trainer (``fmt``: hf, trl, llamafactory, axolotl) runs as written,
    the file ``out`` first; None where the export is the fitness's sections (hf of another fitness,
    or printed rather than written).

    Only the QLoRA fitness trains what these trainers train; ``environment`` is the run's recorded
    one (its ``data_format`` chooses the loss and dataset form, its ``device`` the kernels). ``check``:
    ``--check``'s PYTHON ("" to find the trainer's), or None.
    """
    if (steps is not None and steps < 1) or (epochs is not None and epochs <= 0):
        raise ConfigError(f"--{'steps' if steps is not None else 'epochs'}: must be positive")
    if check is not None and out is None:
        raise ConfigError("--check: checks the exported file: give --export FILE")
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"--format: unknown trainer format {fmt!r} (known: {', '.join(EXPORT_FORMATS)})")
    if spec.get("type") != "qlora":
        if check is not None:
            raise ConfigError(f"--check: a {spec.get('type')!r} run exports its sections, which no trainer runs")
        if fmt == "hf":
            return None
        raise ConfigError(f"--format {fmt}: only a qlora run exports for a trainer (this is {spec.get('type')!r})")
    if out is None:
        if fmt == "hf":
            return None
        raise ConfigError(f"--format {fmt}: the file comes with its dataset written beside it: give --export FILE")
    from fitness.qlora.export.files import export_files, request_for

    request = request_for(
        fmt, spec, config, environment=environment, adapter_path=adapter_path, notes=tuple(notes), out=Path(out),
        trained_steps=trained_steps, steps=steps, epochs=epochs, target_version=target_version,
        check_python=check or None,
    )  # fmt: skip
    return export_files(fmt, request)


def check_export(fmt: str, export: Path, python: str | None) -> Any:
    """``evo best --check``: the written export loaded with the trainer's own parser and trained two
    steps in the trainer's Python (``python``, else the one its command on PATH runs); the
    result's ``ok``, ``line`` (what to say) and ``output`` (what the trainer printed)."""
    from fitness.qlora.export.check import check

    return check(fmt, export, python)
