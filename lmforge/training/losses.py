"""Training losses for task models: (weighted) cross-entropy and the class weights."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.errors import DataError


def class_weights(kind: str, values: Optional[list[float]], labels: list, K: int) -> Optional[torch.Tensor]:
    """``none`` → None; ``custom`` → ``values``; ``balanced`` → ``n / (K * count_k)`` over the
    training labels (ints, or int arrays with -100 for unscored positions)."""
    if kind == "none":
        return None
    if kind == "custom":
        if len(values) != K:
            raise DataError(f"finetune.class_weight_values has {len(values)} values for {K} labels")
        return torch.tensor(values, dtype=torch.float32)
    ys = np.concatenate([np.atleast_1d(np.asarray(y)) for y in labels])
    counts = np.bincount(ys[ys >= 0], minlength=K).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (K * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, weight: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy of logits (N, K) or (B, T, K); labels -100 are not scored."""
    K = logits.size(-1)
    w = weight.to(logits.device) if weight is not None else None
    return F.cross_entropy(logits.reshape(-1, K).float(), labels.reshape(-1), weight=w, ignore_index=-100)
