"""The peak memory of a cohort of trials, estimated from the model's shape and the trials' genes. No torch.

A physical model of what this fitness's own loop holds (``train.py``, ``cohort.py``), in parts:

- ``base``: the 4-bit weights (half a byte each, plus bitsandbytes' constants: a float32
  absmax per block of 64, or with double quantization a byte per block and a float32 per 256
  blocks), the embeddings, norms and an untied head in the compute dtype. Resident, shared.
- ``adapters``: each trial's LoRA A and B in float32, their gradients, and the copies the
  cohort's bmm stacks every micro-step (saved for the backward).
- ``optimizer``: AdamW's two float32 moments; 8-bit AdamW's two bytes (float32 for tensors
  under bitsandbytes' 4096-element minimum); Adafactor's factored second moment (rows + columns).
- ``activations``: what the decoder saves for the backward, per token and layer, for every row
  of the cohort (the counts below); with gradient checkpointing each layer's input only.
- ``dropout``: the masks a trial with dropout draws for a micro-batch (a byte per input of each
  targeted module, drawn through a float32 buffer of four).
- ``logits``: the head of one member at a time: float32 logits, the log-softmax the loss saves,
  and the gradients, plus the head's output in a 16-bit compute dtype.
- ``backward``: the decoder's gradients in flight; with gradient checkpointing also the one
  layer recomputed for its backward, which runs after the head's logits are freed.
- ``validation``: the no-grad forward of ``eval_batch_size`` blocks per scoring trial: a layer's
  intermediates, and one trial's logits and log-softmax at a time.

The peak is the base, the adapters and the optimizer, plus the larger of a training step (what
it saves, and the largest of its moments: the head, the backward, a mask draw) and a validation
pass. Tensors only: a CPU's heap keeps freed blocks too (docs/memory.md), which the calibration
measures. The counts are those of a Llama/Mistral-family layer in transformers 5, read
with autograd's saved-tensor hooks on this loop; another architecture differs by a few tensors a
layer, which the measured peaks (``calibration.py``) correct.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fitness.qlora.base.shape import ModelShape
from fitness.qlora.genes import TARGET_MODULE_SETS, Optim, TrialConfig

MB = 2**20
FLOAT32_BYTES = 4

# Saved for the backward per token and decoder layer (Llama family, sdpa attention):
SAVED_HIDDEN = 3  # hidden-sized, compute dtype: the norms' outputs (the 4-bit matmuls' inputs), the attention output
SAVED_NORM_FLOAT32 = 2  # hidden-sized, float32: each RMSNorm's upcast input
SAVED_KV = 2  # kv-sized, compute dtype: rotated keys, values
SAVED_QUERY = 1  # hidden-sized, compute dtype: rotated queries
SAVED_INTERMEDIATE = 3  # intermediate-sized, compute dtype: the gate's input to the activation, its output, up
SAVED_PER_HEAD = 1  # float32 per head: attention's log-sum-exp
SAVED_SCALARS = 2  # float32: each norm's inverse RMS
# While the backward runs, gradients in flight: about this many intermediate-sized float32 tensors of all rows
BACKWARD_LIVE_INTERMEDIATE = 2
# The head of one member: float32 logits, the saved log-softmax, the gradient of each
LOGIT_FLOAT32_COPIES = 3
# The no-grad forward keeps one layer's intermediates alive: the MLP's three, and the residual and a norm's output
EVAL_LIVE_INTERMEDIATE = 3
EVAL_LIVE_HIDDEN = 3
# bitsandbytes 4-bit: 64 weights per block; double quantization: the absmax in 8 bits, 256 blocks per float32
QUANT_BLOCK = 64
NESTED_BLOCK = 256
BNB_8BIT_MIN_SIZE = 4096  # smaller tensors keep float32 optimizer states
BNB_8BIT_BLOCK = 256  # 8-bit optimizer states: a float32 absmax per 256 values


@dataclass(frozen=True)
class TrialShape:
    """The genes of a trial its memory depends on, with its targets resolved to module kinds."""

    micro_batch: int
    seq_length: int
    r: int
    targets: tuple[str, ...]
    checkpointing: bool
    optim: Optim
    dropout: bool
    dtype_bytes: int  # the compute dtype's: 2 for bfloat16 and float16, 4 for float32
    double_quant: bool

    @classmethod
    def of(cls, cfg: TrialConfig, model: ModelShape, dtype_bytes: int) -> TrialShape:
        return cls(
            cfg.per_device_train_batch_size,
            cfg.max_seq_length,
            cfg.r,
            target_kinds(cfg.target_modules, model),
            cfg.gradient_checkpointing,
            cfg.optim,
            cfg.lora_dropout > 0,
            dtype_bytes,
            cfg.quant.bnb_4bit_use_double_quant,
        )

    @property
    def tokens(self) -> int:
        return self.micro_batch * self.seq_length

    def key(self) -> str:
        """A stable name, for the calibration file and the plan."""
        checkpointing = "ckpt" if self.checkpointing else "nockpt"
        dropout = "dropout" if self.dropout else "nodropout"
        return (
            f"{self.micro_batch}x{self.seq_length}:r{self.r}:{'+'.join(self.targets)}:{checkpointing}:"
            f"{self.optim.value}:{dropout}:{8 * self.dtype_bytes}bit:{'dq' if self.double_quant else 'q'}"
        )


def target_kinds(target_modules: str | tuple[str, ...], model: ModelShape) -> tuple[str, ...]:
    """The kinds of linear layer ``target_modules`` names on this model, in the model's order."""
    names = TARGET_MODULE_SETS.get(target_modules, target_modules) if isinstance(target_modules, str) else None
    if names == "all-linear":
        return tuple(k.name for k in model.linear)
    wanted = {t.rsplit(".", 1)[-1] for t in (names if names is not None else target_modules)}
    return tuple(k.name for k in model.linear if k.name in wanted)


@dataclass(frozen=True)
class EvalShape:
    batch_size: int  # validation blocks per forward, per trial
    seq_length: int


@dataclass(frozen=True)
class Footprint:
    """MB by part; ``base`` is resident, the rest is what the cohort's trials add at their peak."""

    base: float
    parts: dict[str, float]

    @property
    def trials(self) -> float:
        return sum(self.parts.values())

    @property
    def total(self) -> float:
        return self.base + self.trials

    def scaled(self, ratio: float) -> Footprint:
        """The trials' parts times ``ratio`` (measured / estimated, from the calibration)."""
        return Footprint(self.base, {k: v * ratio for k, v in self.parts.items()})

    def biggest(self, n: int = 3) -> str:
        """``base 3,900 MB, activations 2,100 MB, logits 500 MB``: the largest parts, for messages."""
        parts = sorted({"base": self.base, **self.parts}.items(), key=lambda kv: -kv[1])[:n]
        return ", ".join(f"{name} {megabytes(mb)}" for name, mb in parts)


def megabytes(value: float) -> str:
    """``3,900 MB``; tenths under 10 MB, where a tiny model's parts would all read 0 or 1."""
    return f"{value:,.0f} MB" if abs(value) >= 10 else f"{value:.1f} MB"


def base_mb(model: ModelShape, dtype_bytes: int, double_quant: bool) -> float:
    """The resident 4-bit base: packed weights, their constants, and the rest in the compute dtype."""
    quantized = model.linear_parameters
    if double_quant:
        constants = quantized / QUANT_BLOCK * (1 + FLOAT32_BYTES / NESTED_BLOCK)
    else:
        constants = quantized / QUANT_BLOCK * FLOAT32_BYTES
    kept = model.parameters - quantized  # embeddings, norms, an untied head
    return (quantized / 2 + constants + kept * dtype_bytes) / MB


def estimate(model: ModelShape, trials: Sequence[TrialShape], evaluation: EvalShape) -> Footprint:
    """The peak of ``trials`` trained as one cohort (one trial alone: a cohort of one); see the module doc."""
    if not trials:
        raise ValueError("a cohort has at least one trial")
    first = trials[0]
    d = first.dtype_bytes
    adapters = optimizer = 0.0
    for trial in trials:
        modules = _adapted(model, trial)
        adapters += 3 * FLOAT32_BYTES * sum(r * (i + o) for r, i, o in modules)  # weights, gradients, stacked copies
        optimizer += _optimizer_bytes(trial.optim, modules)
    tokens = sum(t.tokens for t in trials)
    saved = sum(_saved_per_token(model, t) * t.tokens for t in trials)
    recomputed = 0.0
    if first.checkpointing:  # layer inputs only; one layer's activations again while its backward runs,
        # which is after the head's logits are freed: that layer counts with the backward, not the head
        saved, recomputed = tokens * model.hidden_size * d * model.layers, saved / model.layers
    saved += 2 * tokens * model.hidden_size * d  # the decoder's output, and its gradient from the head
    masks = sum(_dropout_inputs(model, t) * t.tokens for t in trials if t.dropout)
    # the moment of the step that adds most to what is saved: one member's head, the decoder's
    # backward, or a mask draw (it happens at the first module, when little is saved yet, so it is the bound)
    transients = {
        "logits": max(t.micro_batch * (t.seq_length - 1) for t in trials)
        * model.vocab_size
        * _head_bytes(d, LOGIT_FLOAT32_COPIES),
        "backward": recomputed + tokens * model.intermediate_size * FLOAT32_BYTES * BACKWARD_LIVE_INTERMEDIATE,
        "dropout": max((_dropout_inputs(model, t) * t.tokens * FLOAT32_BYTES for t in trials if t.dropout), default=0),
    }
    moment = max(transients, key=lambda k: transients[k])
    step = saved + masks + transients[moment]
    validation = _validation_bytes(model, len(trials), evaluation, d)
    parts = {"adapters": adapters, "optimizer": optimizer}
    if step >= validation:
        parts.update(activations=saved, dropout=masks)
        parts[moment] = parts.get(moment, 0.0) + transients[moment]
    else:
        parts["validation"] = validation
    return Footprint(base_mb(model, d, first.double_quant), {k: v / MB for k, v in parts.items() if v})


def _adapted(model: ModelShape, trial: TrialShape) -> list[tuple[int, int, int]]:
    """(r, in, out) of every adapted module: its A is r x in, its B out x r."""
    out = []
    for name in trial.targets:
        kind = model.kind(name)
        if kind is not None:
            out += [(trial.r, kind.in_features, kind.out_features)] * kind.count
    return out


def _optimizer_bytes(optim: Optim, modules: list[tuple[int, int, int]]) -> float:
    if optim is Optim.ADAMW_TORCH:
        return 2 * FLOAT32_BYTES * sum(r * (i + o) for r, i, o in modules)
    if optim is Optim.ADAFACTOR:  # the factored second moment of a matrix: a row and a column
        return FLOAT32_BYTES * sum((r + i) + (o + r) for r, i, o in modules)
    # 8-bit AdamW (paged too): two bytes and a float32 absmax per block; small tensors stay in float32
    tensors = [n for r, i, o in modules for n in (r * i, o * r)]
    return sum(
        2 * n * (1 + FLOAT32_BYTES / BNB_8BIT_BLOCK) if n >= BNB_8BIT_MIN_SIZE else 2 * FLOAT32_BYTES * n
        for n in tensors
    )


def _saved_per_token(model: ModelShape, trial: TrialShape) -> float:
    """Bytes the whole decoder saves for one token of this trial (all layers, adapters included)."""
    d, h = trial.dtype_bytes, model.hidden_size
    layer = (
        (SAVED_HIDDEN + SAVED_QUERY) * h * d
        + SAVED_NORM_FLOAT32 * h * FLOAT32_BYTES
        + SAVED_KV * model.kv_size * d
        + SAVED_INTERMEDIATE * model.intermediate_size * d
        + (SAVED_PER_HEAD * model.heads + SAVED_SCALARS) * FLOAT32_BYTES
    )
    lora = 0.0
    for name in trial.targets:
        kind = model.kind(name)
        if kind is None:
            continue
        per_module = trial.r * FLOAT32_BYTES  # A's output, which B's matmul saves
        if trial.dropout or d != FLOAT32_BYTES:  # the float32 input: a copy (or the dropped-out product)
            per_module += kind.in_features * FLOAT32_BYTES
        if trial.dropout:
            per_module += kind.in_features  # the stacked mask (bool)
        lora += per_module * kind.count
    return layer * model.layers + lora


def _dropout_inputs(model: ModelShape, trial: TrialShape) -> int:
    """Inputs one token has across the targeted modules: a mask byte each."""
    return sum(k.in_features * k.count for k in model.linear if k.name in trial.targets)


def _head_bytes(d: int, float32_copies: int) -> int:
    """Bytes per logit: ``float32_copies`` float32 tensors, and the head's output in the compute dtype
    unless that is float32 (then the output is the first float32 copy: ``logits()``'s ``.float()`` is no copy)."""
    return float32_copies * FLOAT32_BYTES + (d if d != FLOAT32_BYTES else 0)


def _validation_bytes(model: ModelShape, scoring: int, evaluation: EvalShape, d: int) -> float:
    tokens = scoring * evaluation.batch_size * evaluation.seq_length
    hidden = tokens * model.hidden_size * d  # every scoring trial's last hidden states
    layer = tokens * (EVAL_LIVE_INTERMEDIATE * model.intermediate_size + EVAL_LIVE_HIDDEN * model.hidden_size) * d
    # one trial's head: float32 logits and their log-softmax (and the output in a 16-bit compute dtype)
    one_head = evaluation.batch_size * (evaluation.seq_length - 1) * model.vocab_size * _head_bytes(d, 2)
    return hidden + max(layer, one_head)
