"""Chat conversations in the model's own chat template, with the loss on assistant turns only.

Driver side (no torch): :func:`read_chat_template` finds the template in the model's files
(tokenizer_config.json, chat_template.jinja, or a GGUF's metadata), so chat data on a model
without one is a ConfigError before a run starts. Worker side: :func:`chat_tokens` renders a
conversation as inference would see it and marks the tokens of each assistant turn, its
end-of-turn marker included, as TRL's assistant-only loss does, but without needing
``{% generation %}`` markers in the template: a turn is what rendering the conversation up
to it adds after the generation prompt. A template that rewrites earlier turns (some drop
past reasoning) falls back to the turn's content as it appears in the whole conversation.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from evo.trial import ConfigError
from fitness.qlora.base.source import ModelSource, converted_gguf_dir
from fitness.qlora.data.corpus import Corpus
from fitness.qlora.data.records import Chat

log = logging.getLogger(__name__)

Span = tuple[int, int]  # [start, end) character offsets in the rendered conversation


def no_template_message(model: str) -> str:
    return (
        f"fitness.model: the tokenizer of {model} has no chat template, which chat data (messages) needs: "
        "use the model's instruct/chat version, add a chat_template to its tokenizer_config.json, "
        "or give the data as text or prompt/completion"
    )


def check_chat_data(corpus: Corpus, source: ModelSource, cache_root: Path, model: str) -> Corpus:
    """``corpus`` with the chat template folded into its identity (the fingerprint), or a
    ConfigError when it holds conversations and the model has no template. A template that
    can't be read here (a hub model offline) is left to the worker to find."""
    if not corpus.has_chat:
        return corpus
    template = read_chat_template(source, cache_root)
    if template == "":
        raise ConfigError(no_template_message(model))
    if template is None:
        log.warning("could not read the chat template of %s here; the worker will use its tokenizer's", model)
        return corpus
    return replace(corpus, identity=hashlib.sha256(f"{corpus.identity}:{template}".encode()).hexdigest())


def read_chat_template(source: ModelSource, cache_root: Path) -> str | None:
    """The model's chat template text; "" when it has none; None when it can't be told here."""
    if source.gguf_file is not None:
        converted = converted_gguf_dir(source, cache_root)
        if (converted / "config.json").is_file():
            return _template_in_folder(converted)
        return _gguf_template(Path(source.name_or_path) / source.gguf_file) if source.is_local else None
    if source.is_local:
        return _template_in_folder(Path(source.name_or_path))
    return _hub_template(source.name_or_path)


def _template_in_folder(folder: Path) -> str:
    """As transformers looks: chat_template.jinja, chat_template.json, then tokenizer_config.json."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file() and jinja.read_text(encoding="utf-8").strip():
        return jinja.read_text(encoding="utf-8")
    for name in ("chat_template.json", "tokenizer_config.json"):
        try:
            found = json.loads((folder / name).read_text(encoding="utf-8")).get("chat_template")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(found, list):  # several named templates: [{name, template}, ...]
            found = "\n".join(t.get("template", "") for t in found if isinstance(t, dict))
        if isinstance(found, str) and found.strip():
            return found
    return ""


def _gguf_template(path: Path) -> str | None:
    try:
        from gguf import GGUFReader

        field = GGUFReader(path).fields.get("tokenizer.chat_template")
        return bytes(field.parts[field.data[0]]).decode("utf-8") if field is not None else ""
    except Exception as exc:  # unreadable here: the worker's tokenizer decides
        log.warning("could not read the chat template from %s: %s", path, exc)
        return None


def _hub_template(repo: str) -> str | None:
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError
    except ImportError:
        return None
    for name in ("chat_template.jinja", "tokenizer_config.json"):
        try:
            folder = Path(hf_hub_download(repo, name)).parent
        except EntryNotFoundError:
            continue
        except Exception:  # offline, gated, a typo: the worker will say
            return None
        found = _template_in_folder(folder)
        if found:
            return found
    return ""


# -- worker side: rendering and masking --------------------------------------------------
def chat_tokens(tokenizer: Any, chat: Chat) -> tuple[list[int], list[bool]]:
    """Token ids of the rendered conversation and, per token, whether it carries loss."""
    text, spans = render_with_spans(tokenizer, chat)
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        starts = [start for start, _ in encoded["offset_mapping"]]
        return list(encoded["input_ids"]), _in_spans(starts, spans)
    return tokens_by_pieces(tokenizer, text, spans)


def render_with_spans(tokenizer: Any, chat: Chat) -> tuple[str, list[Span]]:
    """The whole conversation as the template renders it, and the span of each trained assistant turn."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(no_template_message(getattr(tokenizer, "name_or_path", "the model")))
    messages = chat.as_dicts()
    full = _render(tokenizer, messages, generation_prompt=False)
    spans: list[Span] = []
    for i, (role, content) in enumerate(chat.messages):
        if role != "assistant" or i < chat.loss_from:
            continue
        span = _turn_span(tokenizer, messages, i, full)
        cursor = spans[-1][1] if spans else 0
        if span is None or span[0] < cursor:
            at = full.find(content, cursor)
            if at < 0:
                raise ValueError(f"the chat template does not render assistant message {i + 1} as written")
            span = (at, at + len(content))
        spans.append(span)
    return full, spans


def _turn_span(tokenizer: Any, messages: list[dict[str, str]], i: int, full: str) -> Span | None:
    """From the end of the generation prompt before turn ``i`` to the end of the turn (trailing
    whitespace after the end-of-turn marker left out); None when the template is not prefix-stable."""
    try:
        before = _render(tokenizer, messages[:i], generation_prompt=True)
        through = _render(tokenizer, messages[: i + 1], generation_prompt=False)
    except Exception:  # e.g. a template that can't render a conversation starting with an assistant
        return None
    end = len(through.rstrip())
    if not (full.startswith(through) and through.startswith(before)) or end <= len(before):
        return None
    return len(before), end


def _render(tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    if not isinstance(text, str):
        raise TypeError(f"apply_chat_template(tokenize=False) returned {type(text).__name__}")
    return text


def _in_spans(starts: list[int], spans: list[Span]) -> list[bool]:
    """Per token start offset (ascending), whether it falls inside one of the ascending spans."""
    out, j = [], 0
    for start in starts:
        while j < len(spans) and spans[j][1] <= start:
            j += 1
        out.append(j < len(spans) and spans[j][0] <= start)
    return out


def tokens_by_pieces(tokenizer: Any, text: str, spans: list[Span]) -> tuple[list[int], list[bool]]:
    """For tokenizers without offsets: the text tokenized piece by piece at the span edges."""
    ids: list[int] = []
    mask: list[bool] = []
    position = 0
    for start, end in [*spans, (len(text), len(text))]:
        for piece, loss in ((text[position:start], False), (text[start:end], True)):
            if piece:
                piece_ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
                ids += piece_ids
                mask += [loss] * len(piece_ids)
        position = end
    return ids, mask
