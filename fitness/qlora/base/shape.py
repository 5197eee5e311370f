"""The sizes of a base model that its memory depends on, read from its config alone.

``ModelShape`` is what ``memory/footprint.py`` estimates a trial's memory from: the widths,
the layer count, the vocabulary, and the in/out features of each kind of linear layer. It
comes from the model built on the meta device (shapes, no weights), so it holds for any
architecture transformers knows. A hub model's config is found offline: in the hub cache,
else among the few this package ships (``configs/``, for the example configs'
models), so a plan for a 7B model reads a few kB and downloads nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHIPPED_CONFIGS = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class LinearKind:
    """One kind of linear layer (a leaf name such as ``q_proj``): its features and how many the model has."""

    name: str
    in_features: int
    out_features: int
    count: int


@dataclass(frozen=True)
class ModelShape:
    """Sizes in elements; ``parameters`` counts a tied head once; ``linear`` excludes the output head."""

    hidden_size: int
    intermediate_size: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    tied_embeddings: bool
    parameters: int
    linear: tuple[LinearKind, ...]

    @property
    def kv_size(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def linear_parameters(self) -> int:
        """The weights bitsandbytes quantizes to 4 bits: every linear layer but the head."""
        return sum(k.in_features * k.out_features * k.count for k in self.linear)

    def kind(self, name: str) -> LinearKind | None:
        return next((k for k in self.linear if k.name == name), None)

    @classmethod
    def from_dict(cls, saved: Any) -> ModelShape | None:
        """From ``dataclasses.asdict``'s output; None when anything is missing or not a positive int."""
        try:
            linear = tuple(LinearKind(**k) for k in saved["linear"])
            shape = cls(**{**saved, "linear": linear})
        except (KeyError, TypeError):
            return None
        sizes = [v for k, v in vars(shape).items() if k not in ("linear", "tied_embeddings")]
        sizes += [v for k in linear for v in (k.in_features, k.out_features, k.count)]
        sound = all(type(v) is int and v > 0 for v in sizes) and isinstance(shape.tied_embeddings, bool)
        return shape if sound and all(isinstance(k.name, str) and k.name for k in linear) else None


def model_shape(config: Any, model: Any) -> ModelShape:
    """The shape of ``model``, built from ``config`` on the meta device (``architecture._meta_model``)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    text = config.get_text_config()
    head = model.get_output_embeddings()
    kinds: dict[str, list[int]] = {}
    for name, module in model.named_modules():
        if module is head or name.rsplit(".", 1)[-1] == "lm_head":
            continue
        if isinstance(module, torch.nn.Linear):
            features = (module.in_features, module.out_features)
        elif isinstance(module, Conv1D):  # GPT-2: weight is (in, out)
            features = (module.weight.shape[0], module.nf)
        else:
            continue
        entry = kinds.setdefault(name.rsplit(".", 1)[-1], [*features, 0])
        entry[2] += 1
    linear = tuple(LinearKind(n, i, o, c) for n, (i, o, c) in kinds.items())
    hidden = int(text.hidden_size)
    heads = int(text.num_attention_heads)
    widest = max((k.out_features for k in linear), default=4 * hidden)
    parameters = sum(p.numel() for p in model.parameters())  # a tied head is one tensor, counted once
    return ModelShape(
        hidden_size=hidden,
        intermediate_size=int(getattr(text, "intermediate_size", None) or widest),
        layers=int(text.num_hidden_layers),
        heads=heads,
        kv_heads=int(getattr(text, "num_key_value_heads", None) or heads),
        head_dim=int(getattr(text, "head_dim", None) or hidden // heads),
        vocab_size=int(text.vocab_size),
        tied_embeddings=head is None or head.weight is model.get_input_embeddings().weight,
        parameters=int(parameters),
        linear=linear,
    )


def shipped_config(model_id: str) -> Path | None:
    """The config.json this package ships for a hub id (``org/name`` is ``configs/org--name.json``), else None."""
    path = SHIPPED_CONFIGS / f"{model_id.replace('/', '--')}.json"
    return path if "/" in model_id and path.is_file() else None


def offline_config(model_id: str) -> Path | None:
    """A hub model's config.json without a request: the hub cache's copy, else the shipped one, else None."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(model_id, "config.json")
    except Exception:  # an id the hub library refuses to look up: no cached copy
        found = None
    return Path(found) if isinstance(found, str) else shipped_config(model_id)
