"""The models behind ``/v1/generate`` and ``/v1/embed``: decoders and encoders, from PyTorch or
an ``lmforge export`` ONNX folder.

* :class:`EmbeddingRunner` — texts in, one pooled vector each (the mean of the encoder's hidden
  states over real tokens, as sentence-transformers pools MiniLM); batched like classification.
* :class:`GenerationRunner` — one prompt in, tokens out one at a time through
  :func:`~lmforge.inference.generate.stream`, with a ``cancelled()`` check before every forward
  pass so a client that leaves stops the work at once.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from lmforge.data.labeled_files import Example
from lmforge.errors import ArtifactError, UsageError
from lmforge.inference.decoders import OnnxDecoder, TorchDecoder
from lmforge.inference.embed import OnnxEmbedder, TorchEmbedder
from lmforge.inference.generate import TextStream, stream
from lmforge.inference.ort import session as ort_session
from lmforge.layout import LM_META_FILE
from lmforge.models.config import ModelConfig
from lmforge.tasks import get_task
from lmforge.tasks.batching import collate
from lmforge.tokenizer.io import Specials, load_folder


def _onnx_meta(folder: Path, graph: str) -> dict:
    if not (folder / graph).is_file() or not (folder / LM_META_FILE).is_file():
        raise ArtifactError(f"{folder}: not an ONNX export folder (no {graph} / {LM_META_FILE}); run `lmforge export` first")
    return json.loads((folder / LM_META_FILE).read_text())


class EmbeddingRunner:
    """``predict(texts) -> [{"embedding": [...], "tokens": n, "truncated": bool}]`` (not normalized)."""

    kind = "encoder"

    def __init__(self, cfg, model_cfg: ModelConfig, tokenizer_dir: Path, embed):
        """``embed(ids, mask) -> (B, C)``: a :class:`TorchEmbedder` or :class:`OnnxEmbedder`."""
        folder = Path(cfg.model)
        self.model_cfg, self._embed = model_cfg, embed
        self.tokenizer, ids = load_folder(tokenizer_dir)
        self.specials = Specials.from_ids(ids)
        self.max_length = self.model_cfg.max_seq_len
        self.folder, self.backend = folder, cfg.backend

    def info(self) -> dict:
        return {"task": "embedding", "dimension": self.model_cfg.d_model, "pooling": "mean", "max_length": self.max_length,
                "backend": self.backend, "model": str(self.folder)}

    def predict(self, texts: list[str]) -> list[dict]:
        examples = [Example(t, None, "request", i) for i, t in enumerate(texts)]
        enc = get_task("sequence").encode(self.tokenizer, examples, None, self.specials, False, self.max_length)
        order = np.argsort(-enc.lengths, kind="stable")
        batch = collate(enc, order, self.specials.pad, with_labels=False)
        vectors = self._embed(batch["ids"].numpy(), batch["attention_mask"].numpy())
        out: list = [None] * len(texts)
        for r, i in enumerate(order):
            out[i] = {"embedding": vectors[r], "tokens": int(enc.lengths[i]), "truncated": bool(enc.was_truncated[i])}
        return out


@dataclass
class GenerationRequest:
    prompt: str
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    stop: list[str] = field(default_factory=list)
    seed: int = 0
    ignore_eos: bool = False


class GenerationRunner:
    """One generation at a time (the caller serializes); see :meth:`generate`."""

    kind = "causal_lm"

    def __init__(self, cfg, model_cfg: ModelConfig, tokenizer_dir: Path, new_decoder, model=None):
        """``new_decoder()``: a fresh :class:`TorchDecoder` or :class:`OnnxDecoder` per generation;
        ``model``: the torch :class:`~lmforge.models.transformer.LanguageModel` (None for ONNX), which
        batched generation (:mod:`lmforge.serving.batched_generation`) runs directly."""
        folder = Path(cfg.model)
        self.model_cfg, self._decoder, self.model = model_cfg, new_decoder, model
        self.tokenizer, self.special = load_folder(tokenizer_dir)
        self.max_length = self.model_cfg.max_seq_len
        self.folder, self.backend, self.kv_cache = folder, cfg.backend, cfg.kv_cache or cfg.backend == "onnx"

    def info(self) -> dict:
        return {"task": "generation", "max_length": self.max_length, "vocab_size": self.model_cfg.vocab_size,
                "kv_cache": self.kv_cache, "backend": self.backend, "model": str(self.folder)}

    def prompt_ids(self, prompt: str) -> list[int]:
        """The prompt's ids (the tokenizer's BOS for an empty prompt); a prompt that leaves no room is a UsageError."""
        ids = self.tokenizer.encode(prompt, add_special_tokens=False).ids
        if not ids:
            ids = [self.special["bos"] if self.special.get("bos") is not None else 0]
        if len(ids) >= self.max_length:
            raise UsageError(f"the prompt has {len(ids)} tokens; this model reads at most {self.max_length} "
                             "(prompt + new tokens)")
        return ids

    def generate(self, req: GenerationRequest, emit: Callable[[int, str], None], cancelled: Callable[[], bool]) -> dict:
        """Sample a completion; ``emit(token_id, text_piece)`` after each token (the piece may be
        empty while a possible stop string is held back). Stops at EOS, a stop string,
        ``max_new_tokens``, the model's length, or as soon as ``cancelled()`` is true. Returns the
        text, why it stopped and the counts."""
        ids = self.prompt_ids(req.prompt)
        n = min(req.max_new_tokens, self.max_length - len(ids))
        text = TextStream(self.tokenizer, ids, req.stop)
        eos = None if req.ignore_eos else self.special.get("eos")
        reason, count, t0 = "length", 0, time.perf_counter()
        with torch.inference_mode():
            for nxt in stream(self._decoder(), torch.tensor([ids]), n, req.temperature, req.top_k, req.top_p, None,
                              req.seed, should_stop=cancelled):
                token = int(nxt[0])
                count += 1
                if token == eos:
                    reason = "eos"
                    break
                emit(token, text.push(token))
                if text.stopped:
                    reason = "stop"
                    break
        if cancelled():
            reason = "cancelled"
        elif reason != "stop":
            rest = text.flush()
            if rest:
                emit(-1, rest)
        seconds = time.perf_counter() - t0
        return {"text": text.text, "finish_reason": reason,
                "usage": {"prompt_tokens": len(ids), "completion_tokens": count, "seconds": round(seconds, 4),
                          "tokens_per_second": round(count / seconds, 2) if seconds > 0 else None}}


def load_lm_runner(cfg):
    """The runner for a language-model / encoder folder (``cfg.backend`` torch or onnx)."""
    if cfg.backend == "onnx":
        folder = Path(cfg.model)
        meta = _onnx_meta(folder, cfg.onnx_file)
        mc = ModelConfig(**meta["model"])
        sess = ort_session(folder / cfg.onnx_file, cfg.threads)
        if meta["kind"] == "causal_lm":
            return GenerationRunner(cfg, mc, folder, lambda: OnnxDecoder(sess, mc.n_layer, mc.n_head, mc.head_dim))
        return EmbeddingRunner(cfg, mc, folder, OnnxEmbedder(sess))
    from lmforge.models.load import load_language_model

    lm = load_language_model(cfg.model)
    if lm.causal and not hasattr(lm.model, "head"):
        raise ArtifactError(f"{cfg.model}: a decoder without an LM head cannot generate")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif lm.causal:
        # one core left to the event loop: a token's forward pass is many small ops, and each one
        # waits for every intra-op thread, so one descheduled thread stalls them all (measured: the
        # quickstart decoder streamed 311 tokens/s with 2 threads on 2 cores, 815 with 1)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))
    if lm.causal:
        return GenerationRunner(cfg, lm.cfg, lm.tokenizer_dir, lambda: TorchDecoder(lm.model, cfg.kv_cache),
                                model=lm.model if cfg.kv_cache else None)
    return EmbeddingRunner(cfg, lm.cfg, lm.tokenizer_dir, TorchEmbedder(lm.body))
