"""Schema of the ``distill`` section (``lmforge distill``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class DistillConfig:
    teacher: str = field(default="", metadata={"help": "a fine-tuned classifier or tagger (a finetune folder, its best/, an HF classification folder: the student is fine-tuned, finetune section) or a causal LM (a pretrain folder, a checkpoint, an HF GPT-2/Llama folder: the student is pretrained on pretrain.data_dir, pretrain section)"})
    temperature: float = field(default=2.0, metadata={"min": 0.05, "help": "softens both distributions in the KL term"})
    alpha: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0, "help": "weight of the soft (teacher) term; 1 - alpha goes to the labels"})
    keep_layers: Optional[list[int]] = field(default=None, metadata={"help": "causal LM: the student is the teacher with only these layers (0-based, e.g. [0, 2]), weights copied; unset = the model section at random init (classifiers use finetune.keep_layers)"})
    latency_length: int = field(default=64, metadata={"min": 4, "help": "tokens per text in the teacher/student latency measurement"})
    out_dir: Optional[str] = field(default=None, metadata={"help": "the comparison report (default <run>/distill)"})

    def validate(self):
        if not self.teacher:
            yield "teacher", "give the teacher: a fine-tuned model folder (lmforge finetune output or an HF classifier) or a causal LM"
        if self.keep_layers is not None and (not self.keep_layers or sorted(set(self.keep_layers)) != self.keep_layers
                                             or self.keep_layers[0] < 0):
            yield "keep_layers", "a non-empty, increasing list of layer numbers (0-based), e.g. [0, 2]"
