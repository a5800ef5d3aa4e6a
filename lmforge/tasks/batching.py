"""Batches of encoded examples: right-padded (:func:`collate`) or packed (:func:`pack`).

Packing (``finetune.data.pack``): the examples of a batch are placed several to a row of up to
``row_len`` tokens (first-fit by decreasing length), with a block-diagonal attention mask and
positions restarting at 0 for each example. Every example sees exactly what it would see alone
in a padded batch — the same math and the same (random) batch composition — while the padding
compute disappears.

The row length is chosen per batch (:func:`row_length`): attention over a packed row costs
more per token the longer the row (with a block-diagonal mask PyTorch runs its general
attention path, whose cost grows with the row, not with the examples in it), so short texts
are packed into short rows rather than into ``max_length`` ones.
"""

from __future__ import annotations

import numpy as np
import torch

from lmforge.tasks.encoding import Encoded


def collate(enc: Encoded, idx: np.ndarray, pad_id: int, with_labels: bool = True) -> dict[str, torch.Tensor]:
    """Right-pad the examples ``idx`` to the longest of them."""
    T = max(len(enc.ids[i]) for i in idx)
    ids = np.full((len(idx), T), pad_id, dtype=np.int64)
    mask = np.zeros((len(idx), T), dtype=np.int64)
    for r, i in enumerate(idx):
        n = len(enc.ids[i])
        ids[r, :n] = enc.ids[i]
        mask[r, :n] = 1
    out = {"ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if with_labels:
        if isinstance(enc.labels[0], np.ndarray):
            lab = np.full((len(idx), T), -100, dtype=np.int64)
            for r, i in enumerate(idx):
                lab[r, :len(enc.labels[i])] = enc.labels[i]
        else:
            lab = np.asarray([enc.labels[i] for i in idx], dtype=np.int64)
        out["labels"] = torch.from_numpy(lab)
    return out


def _first_fit(lengths: list[int], row_len: int) -> tuple[list[list[int]], list[int]]:
    """First-fit by decreasing length: the members (positions in ``lengths``) and free room of each row."""
    rows: list[list[int]] = []
    free: list[int] = []
    for j in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
        for r, room in enumerate(free):
            if lengths[j] <= room:
                rows[r].append(j)
                free[r] -= lengths[j]
                break
        else:
            rows.append([j])
            free.append(row_len - lengths[j])
    return rows, free


def row_length(lengths: list[int], max_len: int, d_model: int, step: int = 8) -> int:
    """The row length (a multiple of ``step`` from the longest example up to ``max_len``) that
    minimizes the estimated cost ``rows · L · (1 + L / d_model)`` of packing ``lengths``.

    The model is measured, not derived: for MiniLM (d_model 384, 2 CPU threads) one training
    step costs ~0.31 ms per token at short rows and (1 + L / ~400) times that at rows of L
    (benchmarks/prof_pack_vs_pad.py), i.e. the attention overhead of a row grows like L / d_model."""
    longest = max(lengths)
    best, best_cost = longest, None
    for L in dict.fromkeys([longest, *range(-(-longest // step) * step, max_len + 1, step)]):
        rows, free = _first_fit(lengths, L)
        width = max(L - f for f in free)  # the batch is cut to its fullest row
        cost = len(rows) * width * (1 + width / d_model)
        if best_cost is None or cost < best_cost:
            best, best_cost = L, cost
    return best


def pack(enc: Encoded, idx: np.ndarray, pad_id: int, row_len: int, causal: bool) -> dict[str, torch.Tensor]:
    """Pack the examples ``idx`` into rows (see the module docstring). Returns ids (R, L), a boolean
    attention mask (R, 1, L, L), positions (R, L), labels ((N,) or (R, L)) and pool_index (N, 2):
    the (row, position) read by the pooler — the first token (encoders) or the last (decoders) —
    in the order of ``idx``."""
    lengths = [len(enc.ids[i]) for i in idx]
    rows, free = _first_fit(lengths, row_len)  # members (positions in idx) of each row
    L = max(row_len - f for f in free)
    R = len(rows)
    ids = np.full((R, L), pad_id, dtype=np.int64)
    seg = -1 - np.arange(L, dtype=np.int64)[None].repeat(R, 0)  # padding: a segment of its own
    pos = np.zeros((R, L), dtype=np.int64)
    pool = np.zeros((len(idx), 2), dtype=np.int64)
    token_labels = isinstance(enc.labels[0], np.ndarray) if len(enc.labels) else False
    lab = np.full((R, L), -100, dtype=np.int64) if token_labels else None
    for r, members in enumerate(rows):
        o = 0
        for j in members:
            i, n = idx[j], lengths[j]
            ids[r, o:o + n] = enc.ids[i]
            seg[r, o:o + n] = j
            pos[r, o:o + n] = np.arange(n)
            pool[j] = (r, o + n - 1 if causal else o)
            if token_labels:
                lab[r, o:o + n] = enc.labels[i]
            o += n
    mask = seg[:, :, None] == seg[:, None, :]  # (R, L, L) same example
    if causal:
        mask &= np.tril(np.ones((L, L), dtype=bool))[None]
    labels = lab if token_labels else np.asarray([enc.labels[i] for i in idx], dtype=np.int64)
    return {"ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask[:, None]),
            "positions": torch.from_numpy(pos), "labels": torch.from_numpy(labels),
            "pool_index": torch.from_numpy(pool)}
