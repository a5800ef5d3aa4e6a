"""Embedding health: do the input embeddings of rarer tokens stay apart, or drift onto one shared
direction (the collapse a tied MLM decoder causes: every softmax step pushes every non-target row
the same way)?

The figure is the mean pairwise cosine of the input-embedding rows within a band of training
frequency ranks. At initialization it is ~0 in every band; a value that climbs towards 1 in the
rare bands means those tokens have become one vector to the model, and fine-tuning starts from
embeddings that cannot tell them apart.

A second figure watches the body's output: the mean pairwise cosine of the final hidden states of
every position of a few validation windows. Near 1, the body says the same thing for every token
of every input — a collapsed representation fine-tuning cannot use (an RTD discriminator stuck at
its prior does this).
"""

from __future__ import annotations

import numpy as np
import torch

BANDS = ((0, 1000), (1000, 4000), (4000, None))  # frequency-rank bands (most frequent first)


def mean_pairwise_cosine(x: torch.Tensor) -> float:
    """Mean over pairs i != j of cos(x_i, x_j) for the rows of ``x`` (n >= 2), in O(n): with unit
    rows u, sum_{i != j} u_i . u_j = |sum u|^2 - n."""
    u = torch.nn.functional.normalize(x.float(), dim=-1)
    s = u.sum(0)
    n = len(u)
    return float((s @ s - n) / (n * (n - 1)))


def band_name(lo: int, hi: int | None) -> str:
    return f"emb_cos_rank_{lo}_{hi}" if hi is not None else f"emb_cos_rank_{lo}_up"


def token_ranks(ds, vocab_size: int, special_ids: list[int], max_windows: int = 100_000) -> np.ndarray:
    """Non-special token ids ordered from most to least frequent in the first ``max_windows``
    windows of ``ds`` (a :class:`~lmforge.data.shards.PackedDataset`); unseen ids come last."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    n = min(len(ds), max_windows)
    per = ds.per_shard
    for s, m in enumerate(ds.maps):
        take = min(len(m), max(0, n - s * per))
        if take:
            counts += np.bincount(np.asarray(m[:take]).ravel(), minlength=vocab_size)[:vocab_size]
    counts[[i for i in special_ids if 0 <= i < vocab_size]] = -1
    order = np.argsort(-counts, kind="stable")
    return order[counts[order] >= 0]


@torch.no_grad()
def band_cosines(weight: torch.Tensor, ranks: np.ndarray) -> dict[str, float]:
    """Mean pairwise cosine of the rows of ``weight`` (V, C) in each band of ``ranks``."""
    if hasattr(weight, "full_tensor"):  # an FSDP-sharded table: every rank gathers it (a collective)
        weight = weight.full_tensor()
    w = weight.detach().cpu()
    out = {}
    for lo, hi in BANDS:
        ids = ranks[lo:hi]
        if len(ids) >= 2:
            out[band_name(lo, hi)] = mean_pairwise_cosine(w[torch.as_tensor(ids)])
    return out


@torch.no_grad()
def output_cosine(body: torch.nn.Module, ids: torch.Tensor) -> float:
    """Mean pairwise cosine of the final hidden states of all positions of ``ids`` (B, T)."""
    was = body.training
    body.eval()
    h = body(ids).flatten(0, 1)
    body.train(was)
    return mean_pairwise_cosine(h)
