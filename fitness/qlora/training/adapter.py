"""One trial's LoRA adapter, held apart from the base so that many can share it (see ``cohort.py``).

The weights, their initialisation and their names are peft's: ``lora_A`` drawn with
kaiming-uniform(a=sqrt(5)) from the trial's seed, module by module, ``lora_B`` zero, scale
``alpha / r`` (``alpha / sqrt(r)`` with rsLoRA), state-dict keys
``base_model.model.<module>.lora_A.weight``, so ``save_pretrained`` writes a directory that
``PeftModel.from_pretrained`` loads. Dropout masks come from a generator of the adapter's
own, reseeded per micro-batch, so a trial's randomness never depends on its cohort.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from fitness.qlora.genes import TrialConfig

PREFIX = "base_model.model."  # what peft's state dict puts before a module's name


def linear_modules(base) -> list[str]:
    """Names of the layers LoRA can target (every Linear, 4-bit ones included, but the output head)."""
    head = base.get_output_embeddings()
    return [name for name, m in base.named_modules() if isinstance(m, torch.nn.Linear) and m is not head]


def resolve_targets(target_modules: str | list[str], linear: list[str]) -> list[str]:
    """The modules ``target_modules`` (LoraConfig's value) names, as peft matches them: "all-linear",
    or names equal to one of the list or ending in "." + one of it."""
    if target_modules == "all-linear":
        return list(linear)
    names = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    found = [m for m in linear if any(m == t or m.endswith("." + t) for t in names)]
    if not found:
        raise ValueError(f"target_modules {target_modules!r} match no linear layer of the model")
    return found


class Adapter:
    """The LoRA weights of one trial on each of its ``targets`` (float32, on ``device``)."""

    def __init__(self, base, targets: list[str], cfg: TrialConfig, *, seed: int, device: torch.device) -> None:
        self.targets = list(targets)
        self.cfg = cfg
        self.scale = cfg.lora_alpha / (math.sqrt(cfg.r) if cfg.use_rslora else cfg.r)
        self.dropout = float(cfg.lora_dropout)
        self.device = device
        init = torch.Generator().manual_seed(seed)  # on the CPU: the same weights on every device
        self.weights: dict[str, tuple[torch.nn.Parameter, torch.nn.Parameter]] = {}
        for name in self.targets:
            layer = base.get_submodule(name)
            layer = getattr(layer, "base_layer", layer)  # already wrapped for another trial of the cohort
            a = torch.empty(cfg.r, layer.in_features)
            torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=init)
            b = torch.zeros(layer.out_features, cfg.r)
            self.weights[name] = (torch.nn.Parameter(a.to(device)), torch.nn.Parameter(b.to(device)))
        self._masks = torch.Generator(device=device)

    @property
    def rank(self) -> int:
        return self.cfg.r

    def parameters(self) -> list[torch.nn.Parameter]:
        """In peft's order (module by module, A before B), which optimizer state dicts rely on."""
        return [p for pair in self.weights.values() for p in pair]

    def reseed_dropout(self, seed: int) -> None:
        self._masks.manual_seed(seed)

    def draw_masks(self, tokens: int) -> dict[str, torch.Tensor]:
        """Which inputs dropout keeps (bool, ``tokens`` x in_features) on each target, for one batch.

        One draw for all targets: one kernel a trial instead of one a module.
        """
        widths = [a.shape[1] for a, _ in self.weights.values()]
        keep = torch.rand(tokens * sum(widths), generator=self._masks, device=self.device) >= self.dropout
        out, start = {}, 0
        for name, width in zip(self.weights, widths):
            out[name] = keep[start : start + tokens * width].view(tokens, width)
            start += tokens * width
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, (a, b) in self.weights.items():
            out[f"{PREFIX}{name}.lora_A.weight"] = a.detach()
            out[f"{PREFIX}{name}.lora_B.weight"] = b.detach()
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Copy weights saved by :meth:`state_dict` (or peft) in; a missing or extra key is an error."""
        mine = self.state_dict()
        extra, missing = sorted(set(state) - set(mine)), sorted(set(mine) - set(state))
        if extra or missing:
            raise ValueError(f"adapter weights do not match this trial's: extra {extra[:3]}, missing {missing[:3]}")
        with torch.no_grad():
            for key, tensor in mine.items():
                tensor.copy_(state[key])

    def save_pretrained(self, path: Path, base_model: str | None) -> None:
        """Write ``adapter_config.json`` and ``adapter_model.safetensors`` as peft's save_pretrained does."""
        from peft import LoraConfig
        from safetensors.torch import save_file

        cfg = self.cfg
        config = LoraConfig(
            r=cfg.r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=cfg.lora_target_modules(),
            use_rslora=cfg.use_rslora,
            bias="none",
            task_type="CAUSAL_LM",
            base_model_name_or_path=base_model,
        )
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config.save_pretrained(str(path))
        tensors = {k: v.cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(path / "adapter_model.safetensors"), metadata={"format": "pt"})
