"""Typed config of ``lmforge evaluate`` (the CLI flags fill it, e.g. ``--batch-size`` →
``evaluate.batch_size``; validated like every other config, all problems at once)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class EvaluateConfig:
    """``lmforge evaluate``: which model, on which data, where the report goes."""

    model: str = field(default="", metadata={"help": "finetune output folder, HF classification folder, or pretrain folder/checkpoint"})
    file: Optional[str] = field(default=None, metadata={"help": "labeled file (.jsonl/.csv/.tsv; CoNLL for taggers)"})
    data_dir: Optional[str] = field(default=None, metadata={"help": "prepared data folder (with split)"})
    split: str = field(default="test", metadata={"help": "split of data_dir"})
    text_field: str = "text"
    label_field: str = "label"
    max_length: Optional[int] = field(default=None, metadata={"min": 4, "help": "default: the model's fine-tuning max_length"})
    batch_size: int = field(default=128, metadata={"min": 1})
    out: Optional[str] = field(default=None, metadata={"help": "report folder (default <model>/eval/<name>)"})

    def validate(self):
        if not self.model:
            yield "model", "give a model folder"
        if self.file and self.data_dir:
            yield "file", "give --file or --data-dir, not both"
