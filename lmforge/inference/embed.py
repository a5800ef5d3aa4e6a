"""Sentence embeddings: the mean of an encoder's hidden states over real tokens (the pooling
sentence-transformers uses for MiniLM), from PyTorch or an exported ONNX graph."""

from __future__ import annotations

import numpy as np
import torch


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """hidden (B, T, C), attention_mask (B, T) of 1/0 → (B, C)."""
    m = attention_mask.to(hidden.dtype)[..., None]  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norm = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norm, 1e-12)


class TorchEmbedder:
    """``(ids, mask) -> (B, C)`` numpy embeddings from a :class:`TransformerBody`."""

    def __init__(self, body):
        self.body = body.eval()

    @torch.no_grad()
    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
        return mean_pool(self.body(ids_t, mask_t).float(), mask_t).numpy()


class OnnxEmbedder:
    """The same from an ``lmforge export`` encoder graph (its ``sentence_embedding`` output)."""

    def __init__(self, session):
        self.session = session

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.session.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})[0]
