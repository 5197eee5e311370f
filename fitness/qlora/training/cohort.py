"""Many trials' LoRA adapters on one frozen 4-bit base, in one forward and backward.

The batch is the concatenation of every trial's rows. Each targeted Linear4bit is wrapped
by a :class:`CohortLinear` that runs the base matmul once over all rows, then adds each
trial's ``B(A(dropout(x))) * scale`` to that trial's rows only; a trial without an
adapter on a module adds nothing there. Trials of a module with the same row count,
rank and dropout on/off share one batched matmul (``bmm``), so the number of kernels
per module does not grow with the cohort. Rows never mix (attention is per row, norms per
token), so a trial's numbers are those it gets alone, up to the last bits of BLAS
blocking, and a NaN in one trial's rows stays in them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fitness.qlora.training.adapter import Adapter


@dataclass(frozen=True)
class _Group:
    """Adapters of one module applied with one bmm: ``rows`` rows each, trial after trial."""

    adapters: tuple[Adapter, ...]
    rows: int
    spans: tuple[tuple[int, int], ...]  # their rows of the batch, as runs of consecutive rows
    scales: torch.Tensor  # (G, 1, 1) LoRA scale, times 1 / (1 - dropout) when dropping
    dropping: bool  # training, with dropout > 0
    index: torch.Tensor | None  # the rows as one index tensor; None when they are the whole batch


class CohortLinear(torch.nn.Module):
    """A base linear layer plus the adapters of the trials in the cohort that target it."""

    def __init__(self, base_layer: torch.nn.Module, name: str, cohort: Cohort) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.name = name
        self._cohort = [cohort]  # in a list: not a submodule, so the base's state dict is unchanged

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        cohort = self._cohort[0]
        # As peft, result + output in the base's dtype, but in place: the 4-bit matmul keeps its
        # input, not its output, for backward, and a copy of the whole output per module costs
        # as much as the adapters on CPU. One in-place op per group, never on a slice: autograd's
        # backward of an in-place op on a view clones the whole gradient, once per trial.
        # Rows without an adapter here pass as they are.
        for group in cohort.groups(self.name):
            delta = self._delta(cohort, group, x, out.shape).to(out.dtype)
            if group.index is None:
                out += delta
            else:
                out.index_add_(0, group.index, delta)
        return out

    def _delta(self, cohort: Cohort, group: _Group, x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        n = len(group.adapters)
        rows = [x[start:stop] for start, stop in group.spans]
        xg = rows[0] if len(rows) == 1 else torch.cat(rows)
        xg = xg.reshape(n, -1, x.shape[-1]).to(torch.float32)  # adapters compute in float32, as peft's
        if group.dropping:  # dropout's 1 / (1 - p) is in the scales: one pass over x, not two
            xg = xg * torch.stack([cohort.mask(a, self.name, xg.shape[1]) for a in group.adapters])
        a = torch.stack([adapter.weights[self.name][0] for adapter in group.adapters])
        b = torch.stack([adapter.weights[self.name][1] for adapter in group.adapters])
        delta = torch.bmm(torch.bmm(xg, a.transpose(1, 2)), b.transpose(1, 2)) * group.scales
        return delta.reshape(n * group.rows, *shape[1:])


class Cohort:
    """The base with its wrapped layers, and which rows of the current batch are whose."""

    def __init__(self, base) -> None:
        self.base = base
        self.device = next(base.parameters()).device
        self._wrapped: dict[str, CohortLinear] = {}
        self._segments: list[tuple[Adapter, int]] = []
        self._training = False
        self._groups: dict[str, list[_Group]] = {}
        self._masks: dict[int, dict[str, torch.Tensor]] = {}  # by id(adapter), then module

    def wrap(self, names: list[str]) -> None:
        """Put a CohortLinear around each named layer not wrapped yet."""
        for name in names:
            if name not in self._wrapped:
                parent, _, leaf = name.rpartition(".")
                owner = self.base.get_submodule(parent) if parent else self.base
                wrapper = CohortLinear(getattr(owner, leaf), name, self)
                setattr(owner, leaf, wrapper)
                self._wrapped[name] = wrapper

    def unwrap(self) -> None:
        """Give the base its own layers back (also after a failure)."""
        for name, wrapper in self._wrapped.items():
            parent, _, leaf = name.rpartition(".")
            owner = self.base.get_submodule(parent) if parent else self.base
            setattr(owner, leaf, wrapper.base_layer)
        self._wrapped.clear()
        self.layout([], training=False)

    def layout(self, segments: list[tuple[Adapter, int]], *, training: bool) -> None:
        """The next batch holds ``rows`` rows of each adapter, in this order; dropout only when training.

        New dropout masks every time; the groups are kept while the layout is the same
        (building them copies indices to the device, once per module).
        """
        same = training == self._training and [(id(a), n) for a, n in segments] == [
            (id(a), n) for a, n in self._segments
        ]
        self._segments = segments
        self._training = training
        if not same:
            self._groups = {}
        self._masks = {}

    def groups(self, name: str) -> list[_Group]:
        if name not in self._groups:
            self._groups[name] = self._group(name)
        return self._groups[name]

    def mask(self, adapter: Adapter, name: str, tokens: int) -> torch.Tensor:
        """Drawn once per batch, so a recomputed forward (gradient checkpointing) drops the same inputs."""
        if id(adapter) not in self._masks:
            self._masks[id(adapter)] = adapter.draw_masks(tokens)
        return self._masks[id(adapter)][name]

    def _group(self, name: str) -> list[_Group]:
        by_shape: dict[tuple[int, int, bool], list[tuple[Adapter, int]]] = {}
        start = 0
        for adapter, rows in self._segments:
            if name in adapter.weights:
                drops = self._training and adapter.dropout > 0
                by_shape.setdefault((rows, adapter.rank, drops), []).append((adapter, start))
            start += rows
        total, groups = start, []
        for (rows, _, drops), members in by_shape.items():
            spans: list[tuple[int, int]] = []
            for _, start in members:  # members are in row order: merge runs that touch
                if spans and spans[-1][1] == start:
                    spans[-1] = (spans[-1][0], start + rows)
                else:
                    spans.append((start, start + rows))
            adapters = tuple(a for a, _ in members)
            column = [[[a.scale / (1.0 - a.dropout) if drops else a.scale]] for a in adapters]
            groups.append(
                _Group(
                    adapters,
                    rows,
                    tuple(spans),
                    torch.tensor(column, dtype=torch.float32, device=self.device),
                    drops,
                    None if spans == [(0, total)] else _rows(spans, self.device),
                )
            )
        return groups


def _rows(spans: list[tuple[int, int]], device: torch.device) -> torch.Tensor:
    return torch.cat([torch.arange(a, b) for a, b in spans]).to(device)


def hidden_states(base, ids: torch.Tensor) -> torch.Tensor:
    """The decoder's last hidden states: the model's forward without the head."""
    return base.get_decoder()(input_ids=ids, use_cache=False).last_hidden_state


def logits(base, hidden: torch.Tensor) -> torch.Tensor:
    """The head on ``hidden`` with the model's own logit scaling, in float32 as the HF loss takes them."""
    out = base.get_output_embeddings()(hidden)
    scale = getattr(base.config, "logit_scale", None)  # Cohere
    if scale:
        out = out * scale
    cap = getattr(base.config, "final_logit_softcapping", None)  # Gemma 2
    if cap:
        out = torch.tanh(out / cap) * cap
    return out.float()


def causal_lm_loss(base, hidden: torch.Tensor, labels: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross entropy over labelled tokens (labels -100 carry none), as the HF loss."""
    predicted = logits(base, hidden[:, :-1])
    return torch.nn.functional.cross_entropy(
        predicted.flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100, reduction=reduction
    )
