"""Schema of the ``distill`` section (``lmforge distill``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class DistillConfig:
    teacher: str = field(default="", metadata={"help": "a fine-tuned classifier or tagger (a finetune folder, its best/, an HF classification folder: the student is fine-tuned, finetune section) or a causal LM (a pretrain folder, a checkpoint, an HF GPT-2/Llama folder: the student is pretrained on pretrain.data_dir, pretrain section)"})
    temperature: float = field(default=2.0, metadata={"min": 0.05, "help": "softens both distributions in the KL term"})
    alpha: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0, "help": "weight of the soft (teacher) term; 1 - alpha goes to the labels"})
    keep_layers: Optional[list[int]] = field(default=None, metadata={"help": "causal LM: the student is the teacher with only these layers (0-based, e.g. [0, 2]), weights copied; unset = the model section at random init (classifiers use finetune.keep_layers)"})
    transfer_file: Optional[str] = field(default=None, metadata={"help": "unlabeled texts (JSONL/CSV/TSV, finetune.data.text_field; labels ignored) the student also learns from, on the teacher's soft labels only (sequence classification)"})
    max_transfer_examples: Optional[int] = field(default=None, metadata={"min": 1, "help": "a seeded random subset of transfer_file"})
    teacher_logits: Literal["on_the_fly", "cache"] = field(default="on_the_fly", metadata={"help": "on_the_fly: the teacher runs on every batch (any task); cache: one teacher pass over the training set, kept as float16 in <run>/distill/teacher_logits.npy and reused (sequence classification)"})
    latency_length: int = field(default=64, metadata={"min": 4, "help": "tokens per text in the teacher/student latency measurement"})
    out_dir: Optional[str] = field(default=None, metadata={"help": "the comparison report (default <run>/distill)"})

    def validate(self):
        if not self.teacher:
            yield "teacher", "give the teacher: a fine-tuned model folder (lmforge finetune output or an HF classifier) or a causal LM"
        if self.keep_layers is not None and (not self.keep_layers or sorted(set(self.keep_layers)) != self.keep_layers
                                             or self.keep_layers[0] < 0):
            yield "keep_layers", "a non-empty, increasing list of layer numbers (0-based), e.g. [0, 2]"
