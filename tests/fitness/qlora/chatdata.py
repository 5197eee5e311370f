"""Chat data and a chat-capable tiny model, written by the tests (offline, deterministic)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

# ChatML-like, with the tiny tokenizer's one special token as the end of a turn.
TINY_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<eos>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def conversations(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` records with ``messages``: arithmetic questions, some with a system prompt, some two-turn."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b, c = rng.randint(2, 40), rng.randint(2, 40), rng.randint(2, 9)
        messages = []
        if rng.random() < 0.3:
            messages.append({"role": "system", "content": "You are a careful calculator. Answer in one sentence."})
        messages += [
            {"role": "user", "content": f"What is {a} plus {b}?"},
            {"role": "assistant", "content": f"{a} plus {b} is {a + b}."},
        ]
        if rng.random() < 0.5:
            messages += [
                {"role": "user", "content": f"And that times {c}?"},
                {"role": "assistant", "content": f"{a + b} times {c} is {(a + b) * c}."},
            ]
        out.append({"messages": messages})
    return out


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def chat_model(tiny_model: Path, folder: Path, template: str = TINY_TEMPLATE) -> Path:
    """A copy of the tiny model whose tokenizer has ``template`` (as chat_template.jinja)."""
    shutil.copytree(tiny_model, folder, dirs_exist_ok=True)
    (folder / "chat_template.jinja").write_text(template)
    return folder
