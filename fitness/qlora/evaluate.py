"""Validation perplexity, the number the fitness answers with. Runs in the worker (imports torch).

Every trial is scored on the same fixed validation blocks (``TokenizedCorpus.validation_blocks``),
independent of its own ``max_seq_length``, so numbers compare across genomes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fitness.qlora.tokens import IGNORE_INDEX, Blocks


@dataclass(frozen=True)
class EvalSettings:
    seq_length: int  # block length of the validation set
    max_tokens: int  # validation set size cap
    batch_size: int
    every: int  # optimizer steps between intermediate evaluations; 0 = end only


@torch.no_grad()
def perplexity(model, blocks: Blocks, batch_size: int) -> float:
    """exp of the token-weighted mean NLL over every labelled, predicted token."""
    model.eval()
    device = next(model.parameters()).device
    total_nll, total_tokens = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        ids, labels = blocks.ids[i : i + batch_size].to(device), blocks.labels[i : i + batch_size].to(device)
        n = int((labels[:, 1:] != IGNORE_INDEX).sum())
        if n:
            total_nll += model(input_ids=ids, labels=labels).loss.float().item() * n
            total_tokens += n
    model.train()
    mean = total_nll / max(total_tokens, 1)
    return math.exp(mean) if mean < 700 else math.inf
