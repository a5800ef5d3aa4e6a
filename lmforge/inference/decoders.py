"""Next-token logits, one step at a time, from PyTorch or from an ONNX graph.

A decoder is two calls: ``prefill(ids)`` runs the prompt (B, T) and returns the logits of its
last position (B, V); ``step(next_ids)`` feeds one new token per row (B,) and returns the logits
after it. :func:`~lmforge.inference.generate.stream` samples from any of them, so the sampling
rules are the same whichever runtime does the arithmetic.

* :class:`TorchDecoder` — our :class:`~lmforge.models.transformer.LanguageModel`, with the KV
  cache (each step runs one token) or without it (each step re-runs the whole sequence; kept to
  measure what the cache is worth).
* :class:`OnnxDecoder` — an ``lmforge export`` decoder graph (inputs ``input_ids``,
  ``attention_mask``, ``past_keys``, ``past_values``; outputs ``logits``, ``present_keys``,
  ``present_values``, keys/values stacked as (layers, batch, heads, past, head size)), run with
  onnxruntime; the first call gets an empty past.
"""

from __future__ import annotations

import numpy as np
import torch

from lmforge.models.layers import KVCache


class TorchDecoder:
    def __init__(self, model, use_cache: bool = True):
        self.model, self.use_cache = model, use_cache
        self.cache: KVCache | None = None
        self.ids: torch.Tensor | None = None

    @torch.no_grad()
    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        self.cache = KVCache(self.model.cfg.n_layer) if self.use_cache else None
        self.ids = ids
        logits, _ = self.model(ids, cache=self.cache)
        return logits[:, -1].float()

    @torch.no_grad()
    def step(self, next_ids: torch.Tensor) -> torch.Tensor:
        self.ids = torch.cat([self.ids, next_ids[:, None]], dim=1)
        if self.use_cache:
            logits, _ = self.model(next_ids[:, None], cache=self.cache)
        else:
            logits, _ = self.model(self.ids)
        return logits[:, -1].float()


class OnnxDecoder:
    def __init__(self, session, n_layer: int, n_head: int, head_dim: int):
        self.session, self.shape = session, (n_layer, n_head, head_dim)
        self.keys = self.values = None
        self.length = 0

    def _run(self, ids: np.ndarray) -> torch.Tensor:
        mask = np.ones((ids.shape[0], self.length + ids.shape[1]), dtype=np.int64)
        logits, self.keys, self.values = self.session.run(
            None, {"input_ids": ids, "attention_mask": mask, "past_keys": self.keys, "past_values": self.values})
        self.length += ids.shape[1]
        return torch.from_numpy(logits[:, -1]).float()

    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        L, H, D = self.shape
        self.keys = np.zeros((L, ids.shape[0], H, 0, D), dtype=np.float32)
        self.values = self.keys.copy()
        self.length = 0
        return self._run(ids.numpy().astype(np.int64))

    def step(self, next_ids: torch.Tensor) -> torch.Tensor:
        return self._run(next_ids.numpy().astype(np.int64)[:, None])
