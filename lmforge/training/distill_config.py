"""Schema of the ``distill`` section (``lmforge distill``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class DistillConfig:
    teacher: str = field(default="", metadata={"help": "a fine-tuned classifier or tagger: a finetune folder, its best/, or an HF classification folder"})
    temperature: float = field(default=2.0, metadata={"min": 0.05, "help": "softens both distributions in the KL term"})
    alpha: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0, "help": "weight of the soft (teacher) term; 1 - alpha goes to the labels"})
    latency_length: int = field(default=64, metadata={"min": 4, "help": "tokens per text in the teacher/student latency measurement"})
    out_dir: Optional[str] = field(default=None, metadata={"help": "the comparison report (default <run>/distill)"})

    def validate(self):
        if not self.teacher:
            yield "teacher", "give the teacher: a fine-tuned model folder (lmforge finetune output or an HF classifier)"
