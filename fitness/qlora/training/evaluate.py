"""Validation perplexity, the number the fitness answers with. Runs in the worker (imports torch).

Every trial is scored on the same fixed validation blocks (``TokenizedCorpus.validation_blocks``),
independent of its own ``max_seq_length``, so numbers compare across genomes. Trials of a
cohort are scored together: each validation batch is repeated once per adapter, and each
copy goes through its own adapter, so the base runs once for all of them.
"""

from __future__ import annotations

import math

import torch

from fitness.qlora.data.tokens import IGNORE_INDEX, Blocks
from fitness.qlora.memory.process import trim_heap
from fitness.qlora.training.adapter import Adapter
from fitness.qlora.training.cohort import Cohort, causal_lm_loss, hidden_states


@torch.no_grad()
def perplexities(cohort: Cohort, adapters: list[Adapter], blocks: Blocks, batch_size: int) -> list[float]:
    """Per adapter: exp of the token-weighted mean NLL over every labelled, predicted token."""
    base, k = cohort.base, len(adapters)
    training = base.training
    if cohort.device.type == "cpu":
        trim_heap()
    base.eval()
    total_nll, total_tokens = torch.zeros(k, dtype=torch.float64, device=cohort.device), 0
    try:
        for i in range(0, len(blocks), batch_size):
            labels = blocks.labels[i : i + batch_size]
            n = int((labels[:, 1:] != IGNORE_INDEX).sum())  # counted on the host: no device sync
            if not n:
                continue
            ids, labels = blocks.ids[i : i + batch_size].to(cohort.device), labels.to(cohort.device)
            rows = len(ids)
            cohort.layout([(adapter, rows) for adapter in adapters], training=False)
            hidden = hidden_states(base, ids.repeat(k, 1))
            for j in range(k):  # summed on the device: one sync at the end, not one per batch and trial
                total_nll[j] += causal_lm_loss(base, hidden[j * rows : (j + 1) * rows], labels, reduction="sum")
            total_tokens += n
    finally:
        base.train(training)
    means = [nll / max(total_tokens, 1) for nll in total_nll.tolist()]
    return [math.exp(mean) if mean < 700 else math.inf for mean in means]
