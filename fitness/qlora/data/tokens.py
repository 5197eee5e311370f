"""Tokenizing, caching and packing the corpus. Runs in the worker (imports torch).

Documents are concatenated (text and prompt/completion with EOS after each; a chat
conversation as its template renders it) and cut into equal blocks, so no compute goes
to padding; blocks without a single token that carries loss are left out, since their
loss would be 0/0. Token ids are cached on disk keyed by tokenizer (and chat template)
+ corpus, and packed blocks are kept in memory per block length for the worker's lifetime.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fitness.qlora.data.chat import chat_tokens
from fitness.qlora.data.corpus import Corpus
from fitness.qlora.data.records import Chat, Doc

IGNORE_INDEX = -100  # label value the Hugging Face causal-LM loss skips
CHAT_TOKENS_VERSION = 1  # bump when rendering or masking of conversations changes (keys the cache)


@dataclass(frozen=True)
class TokenStream:
    """Parallel 1-D int64 tensors: ``labels`` is ``ids`` with IGNORE_INDEX on prompt tokens."""

    ids: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.ids.numel())


@dataclass(frozen=True)
class Blocks:
    """``ids`` and ``labels`` of shape (n_blocks, block_length)."""

    ids: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def tokenize_docs(tokenizer, docs: tuple[Doc, ...]) -> TokenStream:
    """One stream; ``labels`` keep the tokens that carry loss (completions, assistant turns)."""
    eos = tokenizer.eos_token_id
    pairs = [doc for doc in docs if not isinstance(doc, Chat)]
    encoded = zip(_encode(tokenizer, [p for p, _ in pairs]), _encode(tokenizer, [c for _, c in pairs]))
    ids: list[int] = []
    labels: list[int] = []
    for doc in docs:
        if isinstance(doc, Chat):  # the template delimits conversations itself: no EOS added
            tokens, loss = chat_tokens(tokenizer, doc)
            ids += tokens
            labels += [t if keep else IGNORE_INDEX for t, keep in zip(tokens, loss)]
            continue
        prompt, completion = next(encoded)
        ids += prompt + completion + [eos]
        labels += [IGNORE_INDEX] * len(prompt) + completion + [eos]
    return TokenStream(torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long))


def pack(stream: TokenStream, block_length: int, *, max_blocks: int | None = None) -> Blocks:
    """Cut the stream into full blocks (the tail is dropped); a stream shorter than one block is one block.

    Blocks where no predicted token (all but the first) carries loss are dropped, then
    ``max_blocks`` are kept; if none carries loss, they are all kept (scored as empty).
    """
    n_blocks = max(1, len(stream) // block_length)
    length = min(block_length, len(stream))
    used = n_blocks * length
    ids, labels = stream.ids[:used].view(n_blocks, length), stream.labels[:used].view(n_blocks, length)
    with_loss = (labels[:, 1:] != IGNORE_INDEX).any(dim=1)
    if not bool(with_loss.all()) and bool(with_loss.any()):
        ids, labels = ids[with_loss], labels[with_loss]
    if max_blocks is not None:
        ids, labels = ids[:max_blocks], labels[:max_blocks]
    return Blocks(ids, labels)


@dataclass
class TokenizedCorpus:
    """The corpus as token streams, plus packed blocks memoised per block length."""

    train: TokenStream
    validation: TokenStream
    _packed: dict[int, Blocks] = field(default_factory=dict, repr=False)

    def train_blocks(self, block_length: int) -> Blocks:
        if block_length not in self._packed:
            self._packed[block_length] = pack(self.train, block_length)
        return self._packed[block_length]

    def validation_blocks(self, block_length: int, max_tokens: int) -> Blocks:
        """The fixed validation set: the first ``max_tokens`` tokens (rounded up to whole blocks)."""
        return pack(self.validation, block_length, max_blocks=math.ceil(max_tokens / block_length))


def shuffled_batches(blocks: Blocks, batch_size: int, seed: int, *, skip: int = 0):
    """Endless shuffled batches (a new permutation each epoch), reproducible from ``seed``.

    ``skip`` passes over that many batches first (without building them), to continue a
    checkpoint's stream. Batches are full: the same tokens per step all trial long.
    """
    generator = torch.Generator().manual_seed(seed)
    size = min(batch_size, len(blocks))
    per_epoch = len(blocks) // size
    while True:
        order = torch.randperm(len(blocks), generator=generator)
        first, skip = min(skip, per_epoch), max(0, skip - per_epoch)
        for b in range(first, per_epoch):
            index = order[b * size : (b + 1) * size]
            yield blocks.ids[index], blocks.labels[index]


def tokenize_corpus(corpus: Corpus, tokenizer, cache_root: Path) -> TokenizedCorpus:
    """Tokenize once per (tokenizer, corpus); later calls and workers read the disk cache."""
    template = f":chat{CHAT_TOKENS_VERSION}:{tokenizer.chat_template}" if corpus.has_chat else ""
    key = hashlib.sha256(f"{tokenizer_identity(tokenizer)}{template}:{corpus.identity}".encode()).hexdigest()[:24]
    path = cache_root / "tokens" / f"{key}.pt"
    if path.is_file():
        saved = torch.load(path)
        return TokenizedCorpus(TokenStream(*saved["train"]), TokenStream(*saved["validation"]))
    train = tokenize_docs(tokenizer, corpus.train)
    validation = tokenize_docs(tokenizer, corpus.validation)
    if len(train) < 2 or len(validation) < 2:
        raise ValueError("the data tokenizes to fewer than 2 tokens in train or validation")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save({"train": (train.ids, train.labels), "validation": (validation.ids, validation.labels)}, staging)
    staging.replace(path)
    return TokenizedCorpus(train, validation)


def tokenizer_identity(tokenizer) -> str:
    """A hash of the full tokenizer definition when it is a fast tokenizer, else its name and size."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else f"{tokenizer.name_or_path}:{len(tokenizer)}"
    return hashlib.sha256(f"{text}:{tokenizer.eos_token_id}".encode()).hexdigest()


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    if not any(texts):
        return [[] for _ in texts]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]
