"""One data record (a JSON object, a dataset row) as a document, checked. No torch here.

A record is read by the fields it has, in this order: a chat conversation
(``messages_field``), a prompt with its completion (``prompt_field`` and
``completion_field``: strings, or TRL's conversational form, lists of messages),
plain text (``text_field``). Anything else is a one-line ConfigError naming the
record, so a bad line is found before a run starts, not in the worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evo.trial import ConfigError

CHAT_ROLES = ("system", "user", "assistant")  # what chat templates commonly render; the loss is on assistant


@dataclass(frozen=True)
class Chat:
    """A conversation of ``(role, content)`` messages; the loss is on assistant messages from
    index ``loss_from`` on (0 for ``messages``; TRL's conversational prompt/completion
    starts it at the completion, as its completion-only loss does)."""

    messages: tuple[tuple[str, str], ...]
    loss_from: int = 0

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]


Doc = tuple[str, str] | Chat  # (prompt, completion): the loss is on the completion; text has an empty prompt


@dataclass(frozen=True)
class Fields:
    """The record fields (dataset columns) documents are read from: ``fitness.*_field``."""

    text: str = "text"
    messages: str = "messages"
    prompt: str = "prompt"
    completion: str = "completion"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.messages, self.prompt, self.completion, self.text)

    def expected(self) -> str:
        return (
            f"a {self.text!r} string (text_field), {self.prompt!r}+{self.completion!r} "
            f"(prompt_field, completion_field) or a {self.messages!r} list of messages (messages_field)"
        )


def record_doc(record: Any, fields: Fields, *, key: str, where: str) -> Doc | None:
    """The document in ``record``; None for one with empty text (skipped, as blank lines are).

    ``key`` is the spec key the data came from (``data``, ``validation_data``), ``where``
    says which record (``file.jsonl:12``, ``train row 3``) for the error message.
    """

    def fail(problem: str) -> ConfigError:
        return ConfigError(f"fitness.{key}: {where} {problem}")

    if not isinstance(record, Mapping):
        raise fail(f"is a {type(record).__name__}, not an object with {fields.expected()}")
    present = {name: record.get(name) for name in fields.columns if record.get(name) is not None}
    if fields.messages in present:
        return _chat(present[fields.messages], 0, fail, fields.messages)
    if fields.prompt in present and fields.completion in present:
        prompt, completion = present[fields.prompt], present[fields.completion]
        if isinstance(prompt, str) and isinstance(completion, str):
            return (prompt, completion) if completion.strip() else None
        if isinstance(prompt, list) and isinstance(completion, list):  # TRL's conversational prompt-completion
            return _chat(prompt + completion, len(prompt), fail, f"{fields.prompt}+{fields.completion}")
        raise fail(f"needs {fields.prompt!r} and {fields.completion!r} both strings or both lists of messages")
    if fields.text in present:
        text = present[fields.text]
        if not isinstance(text, str):
            raise fail(f"has a {type(text).__name__} in {fields.text!r}, not a string")
        return ("", text) if text.strip() else None
    raise fail(f"needs {fields.expected()}")


def _chat(messages: Any, loss_from: int, fail, name: str) -> Chat:
    if not isinstance(messages, list):
        raise fail(f"has a {type(messages).__name__} in {name!r}, not a list of {{role, content}} messages")
    if not messages:
        raise fail(f"is an empty conversation ({name!r} has no messages)")
    out: list[tuple[str, str]] = []
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, Mapping):
            raise fail(f"message {number} is a {type(message).__name__}, not a {{role, content}} object")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str):
            raise fail(f"message {number} has no 'role' string")
        if role not in CHAT_ROLES:
            raise fail(f"message {number} has role {role!r} (accepted: {', '.join(CHAT_ROLES)})")
        if not isinstance(content, str):
            raise fail(f"message {number} has no 'content' string")
        out.append((role, content))
    if not any(role == "assistant" for role, _ in out[loss_from:]):
        raise fail(f"has no assistant message{' in its completion' if loss_from else ''} to train on")
    return Chat(tuple(out), loss_from)
