"""Run in the trainer's own Python (``python probe.py FORMAT FILE WORKDIR``): load an exported file
with the trainer's own parser, then train two steps with its own CLI or API into WORKDIR.

Standalone on purpose: the trainer's environment need not have evo-qlora, so this imports only
the standard library, PyYAML (every trainer has it) and the trainer. A deprecation warning the
parser raises about a key of the file fails the check, as an unknown key does. The last line
printed is one JSON object: {"ok": bool, "stage": "parse" | "train", "message": str, "versions": {...}}.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import traceback
import warnings
from importlib import metadata
from pathlib import Path

STEPS = 2
PACKAGES = {
    "hf": ("transformers", "peft", "bitsandbytes", "torch"),
    "trl": ("trl", "transformers", "peft", "bitsandbytes", "torch"),
    "llamafactory": ("llamafactory", "transformers", "peft", "bitsandbytes", "torch"),
    "axolotl": ("axolotl", "transformers", "peft", "bitsandbytes", "torch"),
}


def versions(fmt: str) -> dict[str, str]:
    out = {}
    for name in PACKAGES[fmt]:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def load(file: Path) -> dict:
    import yaml

    return yaml.safe_load(file.read_text())


def parse(fmt: str, file: Path, work: Path) -> None:
    """The trainer's own parser on the file, strict about unknown keys."""
    cfg = load(file)
    if fmt == "hf":
        from peft import LoraConfig
        from transformers import BitsAndBytesConfig, HfArgumentParser, TrainingArguments

        HfArgumentParser(TrainingArguments).parse_dict(cfg["training"], allow_extra_keys=False)
        LoraConfig(**cfg["lora"])
        BitsAndBytesConfig(**cfg["quantization"])
    elif fmt == "trl":
        from transformers import HfArgumentParser
        from trl import ModelConfig, ScriptArguments, SFTConfig

        HfArgumentParser((ScriptArguments, SFTConfig, ModelConfig)).parse_yaml_file(str(file), allow_extra_keys=False)
    elif fmt == "llamafactory":
        from llamafactory.hparams import get_train_args

        get_train_args({**cfg, "output_dir": str(work / "parsed")})
    elif fmt == "axolotl":
        from axolotl.cli.config import load_cfg
        from axolotl.utils.schemas.config import AxolotlInputConfig

        unknown = sorted(set(cfg) - set(AxolotlInputConfig.model_fields))
        if unknown:  # axolotl drops unknown keys with a warning; an export must have none
            raise ValueError(f"keys axolotl does not know: {', '.join(unknown)}")
        load_cfg(str(file))


def train(fmt: str, file: Path, work: Path) -> None:
    """Two optimizer steps with the trainer's own CLI (or, for hf, the Trainer API) into ``work``."""
    out = str(work / "out")
    bin_dir = Path(sys.executable).parent
    if fmt == "hf":
        return train_hf(load(file), out)
    if fmt == "trl":
        command = [str(bin_dir / "trl"), "sft", "--config", str(file), "--max_steps", str(STEPS)]
        command += ["--output_dir", out, "--report_to", "none", "--save_strategy", "no"]
    elif fmt == "llamafactory":
        command = [str(bin_dir / "llamafactory-cli"), "train", str(file), f"max_steps={STEPS}", f"output_dir={out}"]
        command += ["report_to=none"]  # (its parser reads save_strategy=no as YAML's false)
    else:
        command = [str(bin_dir / "axolotl"), "train", str(file), f"--max-steps={STEPS}", f"--output-dir={out}"]
        command += [f"--dataset-prepared-path={work / 'prepared'}"]  # (save_strategy=no reads as YAML false)
    print("$ " + " ".join(command), flush=True)
    # as in the trainer's activated venv (axolotl relaunches through `accelerate launch` and PATH's python);
    # the trainers' usage telemetry off: a check is no training of the user's
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "DO_NOT_TRACK": "1"}
    env.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    run = subprocess.run(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(run.stdout, flush=True)
    if run.returncode != 0:
        raise subprocess.CalledProcessError(run.returncode, command)
    if f"{STEPS}/{STEPS} [" not in run.stdout:  # the Trainer's progress bar: the steps really ran
        raise RuntimeError(f"{Path(command[0]).name} finished without showing {STEPS}/{STEPS} training steps")


def train_hf(cfg: dict, out: str) -> None:
    """What a user's script does with the sections: each into the class or function it names."""
    from datasets import load_dataset
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        BitsAndBytesConfig,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    quantization = BitsAndBytesConfig(**cfg["quantization"])
    model = AutoModelForCausalLM.from_pretrained(**cfg["model"], quantization_config=quantization)
    training = cfg["training"]
    checkpointing = training.get("activation_checkpointing", training.get("gradient_checkpointing", False))
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    model = get_peft_model(model, LoraConfig(**cfg["lora"]))
    tokenizer = AutoTokenizer.from_pretrained(**cfg["tokenizer"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dataset = load_dataset(**cfg["dataset"])

    def tokenize(record):
        if "messages" in record:
            text = tokenizer.apply_chat_template(record["messages"], tokenize=False)
        else:
            text = record.get("text") or record["prompt"] + record["completion"]
        return tokenizer(text, truncation=True)

    dataset = dataset.map(tokenize, remove_columns=dataset.column_names)
    args = TrainingArguments(**{**training, "output_dir": out, "max_steps": STEPS, "report_to": "none"})
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    result = trainer.train()
    print(f"hf Trainer: {result.global_step} steps, train loss {result.training_loss:.4f}", flush=True)
    if result.global_step != STEPS:
        raise RuntimeError(f"trained {result.global_step} steps, not {STEPS}")


def main() -> int:
    fmt, file, work = sys.argv[1], Path(sys.argv[2]).resolve(), Path(sys.argv[3]).resolve()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    report = {"ok": False, "stage": "parse", "message": "", "versions": versions(fmt)}
    keys = set(load(file))
    for section in load(file).values():
        keys |= set(section) if isinstance(section, dict) else set()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            parse(fmt, file, work)
        named = re.compile(r"\b(" + "|".join(re.escape(k) for k in keys if len(k) > 3) + r")\b")
        deprecated = [  # about a key of the file, not the libraries' own (e.g. peft on an older transformers)
            str(w.message).splitlines()[0]
            for w in caught
            if issubclass(w.category, (FutureWarning, DeprecationWarning)) and named.search(str(w.message))
        ]
        if deprecated:
            raise ValueError(f"deprecation warning: {deprecated[0]}")
        report["stage"] = "train"
        train(fmt, file, work)
    except Exception as exc:  # the check's verdict, not a crash: said in one line
        traceback.print_exc()
        if isinstance(exc, subprocess.CalledProcessError):
            message = f"{Path(exc.cmd[0]).name} exited with status {exc.returncode}"
        else:
            message = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        report["message"] = message
        print(json.dumps(report), flush=True)
        return 1
    report.update(ok=True, message=f"parsed and trained {STEPS} steps")
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
