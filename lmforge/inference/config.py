"""Typed configs of ``lmforge generate`` and ``lmforge predict`` (validated by the same schema as
the experiment config; the CLI flags fill them, e.g. ``--top-k`` → ``generate.top_k``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class GenerateConfig:
    """``lmforge generate``: what to sample from and how."""

    checkpoint: str = field(default="", metadata={"help": "checkpoint folder (step_NNNNNNN) or a pretrain folder (its latest)"})
    prompt: str = ""
    max_new_tokens: int = field(default=100, metadata={"min": 1})
    temperature: float = field(default=0.8, metadata={"min": 0.0, "help": "0 = greedy"})
    top_k: Optional[int] = field(default=50, metadata={"min": 0, "help": "0 or null = no top-k filter"})
    top_p: Optional[float] = field(default=0.95, metadata={"min": 0.0, "max": 1.0})
    seed: int = 0
    tokenizer: Optional[str] = field(default=None, metadata={"help": "tokenizer folder/file (default: the checkpoint's)"})

    def validate(self):
        if not self.checkpoint:
            yield "checkpoint", "give a checkpoint folder or a pretrain output folder"


@dataclass
class PredictConfig:
    """``lmforge predict``: which model, which input file, where the JSONL goes."""

    model: str = field(default="", metadata={"help": "finetune output folder or HF classification folder"})
    file: str = field(default="", metadata={"help": ".jsonl/.csv/.tsv (text field) or .txt (one text per line); CoNLL for taggers"})
    text_field: str = "text"
    id_field: Optional[str] = field(default=None, metadata={"help": "field (JSONL) or column (CSV/TSV) with each record's id, copied into its prediction as id"})
    with_text: bool = field(default=False, metadata={"help": "copy each input text into its prediction"})
    out: Optional[str] = field(default=None, metadata={"help": "output JSONL (default: stdout)"})
    max_length: Optional[int] = field(default=None, metadata={"min": 4, "help": "default: the model's fine-tuning max_length"})
    batch_size: int = field(default=128, metadata={"min": 1})
    strict: bool = field(default=False, metadata={"help": "table models: refuse a file with cells that do not parse, unseen categories or missing cells instead of warning per column and imputing"})

    def validate(self):
        if not self.model:
            yield "model", "give a fine-tuned model folder"
        if not self.file:
            yield "file", "give the input file (--file)"
