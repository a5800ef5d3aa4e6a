"""Typed config of ``lmforge serve`` (filled from its flags, validated like every config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class ServeConfig:
    """``lmforge serve``: the model, where to listen, and the limits every request is held to."""

    model: str = field(default="", metadata={"help": "finetune folder or its best/, pretrain folder or checkpoint, HF model folder, minilm, or an ONNX export folder"})
    backend: Literal["torch", "onnx"] = field(default="torch", metadata={"help": "onnx needs an export folder (lmforge export)"})
    onnx_file: str = field(default="model.onnx", metadata={"help": "which graph of the export folder (e.g. model.int8.onnx)"})
    host: str = "127.0.0.1"
    port: int = field(default=8000, metadata={"min": 0, "max": 65535, "help": "0 = any free port"})
    max_batch_size: int = field(default=32, metadata={"min": 1, "help": "texts per forward pass"})
    max_wait_ms: float = field(default=0.0, metadata={"min": 0.0, "help": "how long a batch waits for more texts (what queued during the previous batch is always taken; 0 measured best)"})
    max_texts: int = field(default=64, metadata={"min": 1, "help": "texts per request"})
    max_chars: int = field(default=20_000, metadata={"min": 1, "help": "characters per text"})
    max_body_bytes: int = field(default=2_000_000, metadata={"min": 1})
    max_queue: int = field(default=1024, metadata={"min": 1, "help": "queued texts (or waiting generations) before 429"})
    timeout_s: float = field(default=30.0, metadata={"min": 0.001, "help": "per-request timeout (504); for a streamed generation, the longest wait for the next token"})
    max_new_tokens: int = field(default=512, metadata={"min": 1, "help": "new tokens per generation request"})
    generation_batch: int = field(default=8, metadata={"min": 1, "help": "torch decoders: concurrent generations that share each forward pass (joining and leaving between steps); 1 = one at a time"})
    kv_cache: bool = field(default=True, metadata={"help": "torch decoders: false re-runs the whole sequence per token (only to measure what the cache is worth)"})
    rate_limit: Optional[float] = field(default=None, metadata={"min": 0.001, "help": "requests per second per client (API key, or address without one) on /v1/; bursts up to max(1, rate); over it: 429 with Retry-After"})
    api_key: Optional[str] = field(default=None, metadata={"help": "require Authorization: Bearer KEY (also LMFORGE_API_KEY)"})
    threads: Optional[int] = field(default=None, metadata={"min": 1, "help": "model threads per worker (default: the cores divided among the workers; torch decoders and image/table models: one core less, left to the event loop)"})
    workers: int = field(default=1, metadata={"min": 1, "help": "server processes, each with its own copy of the model (uvicorn workers)"})

    def validate(self):
        if not self.model:
            yield "model", "give a model folder"
