"""Batched inference shared by fine-tuning validation, ``lmforge evaluate`` and ``lmforge predict``.

Examples are run longest-first in batches (little padding) and results are returned in the
original order. Token-task logits are mapped back to words through the first sub-token of
each word; words cut off by truncation get ``None`` and are counted by the caller.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from lmforge.training.task_data import Encoded, collate


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


def word_tags(enc: Encoded, probs: list[np.ndarray], labels: list[str]) -> tuple[list[list], list[list[float]]]:
    """Per example, the tag of each word (None where truncation removed the word) and its probability."""
    tags, confs = [], []
    for i, p in enumerate(probs):
        t: list = [None] * enc.n_words[i]
        c: list = [0.0] * enc.n_words[i]
        pos = np.nonzero(enc.word_index[i] >= 0)[0]
        best = p[pos].argmax(-1)
        for j, k in zip(pos, best):
            w = enc.word_index[i][j]
            t[w] = labels[k]
            c[w] = float(p[j, k])
        tags.append(t)
        confs.append(c)
    return tags, confs


def entities(words: list[str], tags: list) -> list[dict]:
    """IOB2 tags → entity spans ``{type, start, end (exclusive), text}`` (an I- without B- starts one)."""
    spans, cur = [], None
    for i, t in enumerate(list(tags) + ["O"]):
        t = t or "O"
        if t == "O" or t.startswith("B-") or (cur is not None and t[2:] != cur["type"]):
            if cur is not None:
                cur["end"] = i
                cur["text"] = " ".join(words[cur["start"]:i])
                spans.append(cur)
                cur = None
        if t != "O" and cur is None:
            cur = {"type": t[2:], "start": i}
    return spans
