"""Batched forward passes of a task model over encoded examples (validation, evaluate, predict).

Examples are run longest-first in batches (little padding) and results are returned in the
original order.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from lmforge.tasks.batching import collate
from lmforge.tasks.encoding import Encoded


def default_device() -> torch.device:
    """The first CUDA device when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def predict_probs(model, enc: Encoded, batch_size: int, pad_id: int, device: torch.device,
                  progress: bool = False, desc: str = "predict") -> list[np.ndarray]:
    """Softmax probabilities per example: (K,) for sequence tasks, (T, K) for token tasks."""
    was_training = model.training
    model.eval()
    order = np.argsort(-enc.lengths, kind="stable")
    out: list = [None] * len(enc)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(enc), desc=desc, disable=not sys.stderr.isatty(), leave=False)
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        batch = collate(enc, idx, pad_id, with_labels=False)
        logits, _ = model(batch["ids"].to(device), batch["attention_mask"].to(device))
        probs = torch.softmax(logits.float(), -1).cpu().numpy()
        for r, i in enumerate(idx):
            out[i] = probs[r] if probs.ndim == 2 else probs[r, :len(enc.ids[i])]
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    model.train(was_training)
    return out
