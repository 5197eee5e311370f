"""The model's chat template, as each trainer needs it.

LLaMA-Factory names its templates: where the model's template is one of them, the export
names it; otherwise it leaves ``template`` out, and LLaMA-Factory parses the tokenizer's own.

TRL's assistant-only loss needs ``{% generation %}`` markers, which few templates have (the
trials need none: ``data/chat.py`` finds each assistant turn by rendering). For a template
that renders each message as prefix + content + suffix, the prefixes and suffixes are read
off renderings of sentinel conversations, and a template with the same output and the
markers around each assistant turn (its end-of-turn marker included, as the trials scored)
is written; it is kept only if it renders the run's own conversations exactly as the
model's template does. Anything else gets None, and the export says what to do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fitness.qlora.export.dataset import Dataset
    from fitness.qlora.export.facts import ExportRequest

# A chat template containing the text -> LLaMA-Factory's template name, and the default system
# prompt the model's template has where LLaMA-Factory's differs (its smollm2 adds a full stop).
# Checked against LLaMA-Factory's own rendering by tests/fitness/qlora/export/test_real_trainers.py.
LLAMAFACTORY_TEMPLATES = (
    (
        "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>",
        "smollm2",
        "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    ),
)
_SENTINELS = {"system": "Sys7q", "user": "Usr7q", "assistant": "Ast7q"}
SAMPLED = 64  # the run's conversations the TRL template is checked on


@dataclass(frozen=True)
class TemplateFile:
    """TRL's training template written beside the export, or why there is none (``path`` None)."""

    path: Path | None
    text: str = ""
    why: str = ""


def model_chat_template(request: ExportRequest) -> tuple[str | None, str | None]:
    """The model's chat template and the folder transformers loads its tokenizer from (None: unknown here)."""
    from fitness.qlora.base.source import default_cache_root, resolve_model
    from fitness.qlora.data.chat import read_chat_template
    from fitness.qlora.export.facts import model_location
    from fitness.qlora.spec import QLoRASpec

    try:
        parsed = QLoRASpec.from_dict(request.spec)
        template = read_chat_template(resolve_model(parsed.model_settings), default_cache_root(parsed.model_settings))
    except Exception:  # moved or unreadable: the trainer's own handling
        return None, None
    return template or None, model_location(request.spec)[0]


def llamafactory_keys(request: ExportRequest) -> dict[str, str]:
    """``template`` (and ``default_system``) where LLaMA-Factory has the model's template; none
    otherwise: LLaMA-Factory then parses the tokenizer's own."""
    template, _ = model_chat_template(request)
    for text, name, system in LLAMAFACTORY_TEMPLATES if template else ():
        if text in template:
            return {"template": name, "default_system": system}
    return {}


def trl_chat_template(request: ExportRequest, data: Dataset) -> TemplateFile:
    """The model's template with ``{% generation %}`` markers, as ``<export>.chat_template.jinja``."""
    assert request.out is not None
    template, folder = model_chat_template(request)
    why = "TRL's assistant-only loss needs {% generation %} markers, which could not be added to this model's template"
    if template is None or folder is None:
        return TemplateFile(None, why=f"{why} (not readable here): add them and set chat_template_path")
    if "{% generation %}" in template or "{%- generation %}" in template:
        return TemplateFile(None, why="")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = template
    conversations = [json.loads(line)["messages"] for line in data.text.splitlines()[:SAMPLED]]
    found = generation_template(tokenizer, conversations)
    if found is None:
        return TemplateFile(None, why=f"{why}: add them and set chat_template_path to train as the trials did")
    assert request.out is not None
    return TemplateFile(request.out.absolute().with_name(f"{request.out.stem}.chat_template.jinja"), found + "\n")


def generation_template(tokenizer: Any, conversations: Sequence[list[dict[str, str]]]) -> str | None:
    """The tokenizer's template with ``{% generation %}`` around assistant turns, or None where it
    can't be made to render ``conversations`` (and the sentinel ones) exactly as the original."""
    try:
        parts = _parts(tokenizer)
    except (ValueError, TypeError, KeyError):
        return None
    if parts is None:
        return None
    candidate = _template(parts)
    samples = [*_sentinel_conversations(), *conversations]
    try:
        for messages in samples:
            for prompt in (False, True):
                want = _render(tokenizer, messages, prompt)
                if _render(tokenizer, messages, prompt, candidate) != want:
                    return None
    except Exception:  # a template that can't render one of them: no markers offered
        return None
    return candidate


def _render(tokenizer: Any, messages: list[dict[str, str]], prompt: bool, template: str | None = None) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt, chat_template=template)
    if not isinstance(text, str):
        raise TypeError("apply_chat_template(tokenize=False) returned no text")
    return text


def _msg(role: str, n: int = 1) -> dict[str, str]:
    return {"role": role, "content": f"{_SENTINELS[role]}{n}"}


def _sentinel_conversations() -> list[list[dict[str, str]]]:
    s, u, a = "system", "user", "assistant"
    return [
        [_msg(u)],
        [_msg(u), _msg(a)],
        [_msg(u), _msg(a), _msg(u, 2), _msg(a, 2)],
        [_msg(s), _msg(u), _msg(a)],
        [_msg(s), _msg(u), _msg(a), _msg(u, 2), _msg(a, 2)],
    ]


def _between(text: str, start: str | None, end: str | None) -> str:
    i = 0 if start is None else text.index(start) + len(start)
    j = len(text) if end is None else text.index(end, i)
    return text[i:j]


def _parts(tokenizer: Any) -> dict[str, str] | None:
    """Each role's prefix and suffix, the head before a first non-system message, the generation prompt."""
    s, u, a = (_SENTINELS[r] for r in ("system", "user", "assistant"))
    two = _render(tokenizer, [_msg("user"), _msg("assistant"), _msg("user", 2), _msg("assistant", 2)], False)
    gen = _render(tokenizer, [_msg("user")], True)[len(_render(tokenizer, [_msg("user")], False)) :]
    user_then_assistant = _between(two, f"{u}1", f"{a}1")  # user suffix + assistant prefix
    if not gen or not user_then_assistant.endswith(gen):
        return None  # the generation prompt isn't the assistant's prefix: not this kind of template
    assistant_suffix = _between(two, f"{a}2", None)
    assistant_then_user = _between(two, f"{a}1", f"{u}2")
    if not assistant_then_user.startswith(assistant_suffix):
        return None
    user_prefix = assistant_then_user[len(assistant_suffix) :]
    head = _between(two, None, f"{u}1")
    if not head.endswith(user_prefix):
        return None
    with_system = _render(tokenizer, [_msg("system"), _msg("user"), _msg("assistant")], False)
    system_then_user = _between(with_system, f"{s}1", f"{u}1")
    if not system_then_user.endswith(user_prefix):
        return None
    end = assistant_suffix.rstrip()  # the end-of-turn marker is trained; the whitespace after it isn't
    return {
        "head": head[: len(head) - len(user_prefix)],
        "system_prefix": _between(with_system, None, f"{s}1"),
        "system_suffix": system_then_user[: len(system_then_user) - len(user_prefix)],
        "user_prefix": user_prefix,
        "user_suffix": user_then_assistant[: len(user_then_assistant) - len(gen)],
        "assistant_prefix": gen,
        "assistant_end": end,
        "assistant_after": assistant_suffix[len(end) :],
    }


def _template(p: dict[str, str]) -> str:
    q = {k: json.dumps(v, ensure_ascii=False) for k, v in p.items()}
    return (
        "{%- if messages and messages[0]['role'] != 'system' %}{{ " + q["head"] + " }}{% endif -%}"
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'assistant' -%}"
        "{{ " + q["assistant_prefix"] + " }}{% generation %}{{ message['content'] + " + q["assistant_end"] + " }}"
        "{% endgeneration %}{{ " + q["assistant_after"] + " }}"
        "{%- elif message['role'] == 'user' -%}{{ "
        + q["user_prefix"]
        + " + message['content'] + "
        + q["user_suffix"]
        + " }}"
        "{%- else -%}{{ " + q["system_prefix"] + " + message['content'] + " + q["system_suffix"] + " }}"
        "{%- endif -%}{%- endfor -%}"
        "{%- if add_generation_prompt %}{{ " + q["assistant_prefix"] + " }}{% endif -%}"
    )
