"""Typed config of ``lmforge export`` (filled from its flags, validated like every config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class ExportConfig:
    """``lmforge export``: which model, which format, what to verify on."""

    model: str = field(default="", metadata={"help": "a finetune folder or its best/ (onnx, hf); a pretrain folder/checkpoint, an HF model folder or minilm (onnx: LM / encoder)"})
    format: Literal["onnx", "hf"] = field(default="onnx", metadata={"help": "onnx = a verified ONNX folder; hf = a Hugging Face folder"})
    quantize: Optional[Literal["int8"]] = field(default=None, metadata={"help": "also write model.int8.onnx (dynamic int8)"})
    out: Optional[str] = field(default=None, metadata={"help": "output folder (default <finetune>/export/<format>)"})
    file: Optional[str] = field(default=None, metadata={"help": "labeled file to verify on and to measure quality/latency with (texts only for an LM / encoder)"})
    text_field: str = "text"
    label_field: str = "label"
    max_examples: int = field(default=512, metadata={"min": 1, "help": "examples of file used"})
    latency_examples: int = field(default=100, metadata={"min": 1, "help": "batch-1 calls timed per side"})
    threads: int = field(default=2, metadata={"min": 1, "help": "threads for the latency measurement"})
    tolerance: float = field(default=1e-4, metadata={"min": 0.0, "help": "largest absolute difference allowed between ONNX fp32 and PyTorch outputs (logits, hidden states, embeddings)"})

    def validate(self):
        if not self.model:
            yield "model", "give a model folder"
        if self.quantize and self.format != "onnx":
            yield "quantize", "int8 quantization is for --format onnx"
