"""Chat data from an offline source: questions about the standard library, answered by its docstrings.

The second real task's data (beside the pydoc topics the default run trains on): one
conversation per public function or class of a fixed list of modules, the user asking what
it does, the assistant answering with the first paragraph of its docstring. Only the
Python that runs this decides the text, so the committed file is the record; rerunning on
Python 3.11.7 writes it byte for byte.

    python experiments/build_stdlib_chat.py   # -> experiments/data/stdlib_chat.jsonl
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import random
import re
from pathlib import Path

MODULES = (
    "argparse base64 bisect calendar collections contextlib copy csv dataclasses datetime decimal difflib enum "
    "fnmatch fractions functools glob gzip hashlib heapq html inspect io itertools json logging math operator "
    "os os.path pathlib pickle pprint queue random re secrets shlex shutil sqlite3 statistics string struct "
    "subprocess tarfile tempfile textwrap threading time typing unicodedata urllib.parse uuid zipfile zlib"
).split()
QUESTIONS = (
    "What does `{name}` do in Python?",
    "Explain `{name}` in one or two sentences.",
    "I found `{name}` in some code. What is it for?",
    "How would you describe `{name}` from the standard library?",
)
SYSTEM = "You answer questions about the Python standard library briefly and precisely."
MAX_ANSWER = 600  # characters: a paragraph, so a conversation fits a 256-token block


def first_paragraph(doc: str) -> str | None:
    text = inspect.cleandoc(doc).split("\n\n")[0]
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) < 40 or text.endswith(":") or re.match(r"^[\w.]+\(.*\)( ->.*)?$", text):
        return None  # too short, or only a signature line: nothing to learn
    return text[:MAX_ANSWER].rsplit(" ", 1)[0] + "..." if len(text) > MAX_ANSWER else text


def conversations(seed: int = 0):
    rng = random.Random(seed)
    seen: set[str] = set()
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name, obj in sorted(vars(module).items()):
            if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
                continue
            doc = inspect.getdoc(obj)  # a class whose __doc__ is a descriptor gives None here
            answer = first_paragraph(doc) if isinstance(doc, str) else None
            qualified = f"{module_name}.{name}"
            if answer is None or answer in seen:
                continue  # re-exports share a docstring: keep the first
            seen.add(answer)
            question = rng.choice(QUESTIONS).format(name=qualified)
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
            yield {"messages": [*messages, {"role": "assistant", "content": answer}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "stdlib_chat.jsonl")
    args = parser.parse_args()
    rows = list(conversations())
    args.out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    print(f"{args.out}: {len(rows)} conversations from {len(MODULES)} modules")


if __name__ == "__main__":
    main()
