"""The best trial taken to a trainer: the Hugging Face sections, and files the trainers run as written.

``sections`` splits a config into what ``TrainingArguments``, ``LoraConfig`` and
``BitsAndBytesConfig`` take (no torch, no transformers); ``facts`` turns what a run recorded
into what a trainer needs (precision, length, warmup, model, the version it targets);
``dataset`` and ``templates`` write the training documents and chat templates beside the
export; ``trainers`` writes each trainer's file; ``check`` runs the trainer's own parser
and two training steps on an exported file, in the trainer's own Python (``probe.py``).
"""

from fitness.qlora.export.sections import split_sections

__all__ = ["split_sections"]
