"""Token embeddings from corpus co-occurrence, before the first pretraining step.

A few hundred steps of MLM on a small CPU budget barely move the input embeddings away from their
random start (RESULTS.md: a logistic-regression probe on the mean of the token vectors after 30
minutes of MLM scores as a random table does). Co-occurrence statistics of the same training
tokens give a table that already places words used alike near each other, in seconds:

1. count, for every pair of tokens, how often they appear within ``window`` positions of each
   other inside one document (the packed windows are read as the stream they were cut from:
   documents end at the separator, not at a window's edge; specials skipped);
2. positive pointwise mutual information, with the context distribution smoothed (counts^0.75,
   as word2vec's negative sampling does) so rare contexts do not dominate;
3. a truncated SVD to ``d_model`` dimensions: vector = U · sqrt(S) (Levy & Goldberg, 2014-2015
   show this matches word2vec's skip-gram on similarity tasks);
4. rescaled so the mean row norm equals the model's random initialization (the position
   embeddings and LayerNorms keep their usual balance); tokens never seen keep their random rows.

Large windows capture what a text is about rather than syntax; for sentiment on SST-2 a
document-sized window (32) probed best (RESULTS.md). Counting holds at most ``max_tokens`` of the
train split (memory: about 24 bytes per token per window offset, transient).
"""

from __future__ import annotations

import time
from typing import Iterable

import numpy as np


def _stream(rows: Iterable[np.ndarray], max_tokens: int) -> np.ndarray:
    parts, n = [], 0
    for r in rows:
        parts.append(np.asarray(r, dtype=np.int64))
        n += len(r)
        if n >= max_tokens:
            break
    return np.concatenate(parts)[:max_tokens] if parts else np.zeros(0, np.int64)


def cooccurrence_counts(stream: np.ndarray, vocab: int, window: int, separators: set[int], skip: set[int]):
    """Symmetric sparse (vocab × vocab) counts of token pairs at most ``window`` content tokens
    apart within one document. ``stream`` is the packed windows in order — consecutive windows
    continue the same token stream, so only ``separators`` end a document; ``skip`` ids (a window's
    leading ``<cls>``, padding, ...) are dropped before distances are taken."""
    from scipy import sparse

    doc = np.cumsum(np.isin(stream, list(separators))) if separators else np.zeros(len(stream), np.int64)
    keep = ~np.isin(stream, list(skip | separators))
    ids, doc = stream[keep], doc[keep]
    n = len(ids)
    total = sparse.csr_matrix((vocab, vocab), dtype=np.float64)
    for d in range(1, min(window, n - 1) + 1):
        same = doc[:-d] == doc[d:]
        a, b = ids[:-d][same], ids[d:][same]
        total = total + sparse.csr_matrix((np.ones(len(a)), (a, b)), shape=(vocab, vocab))
    return total + total.T


def ppmi_svd(counts, dim: int, seed: int, alpha: float = 0.75) -> np.ndarray:
    """(vocab, dim) vectors U·sqrt(S) of the truncated SVD of the smoothed positive PMI matrix."""
    from scipy import sparse
    from sklearn.utils.extmath import randomized_svd

    coo = counts.tocoo()
    total = coo.data.sum()
    rows = np.asarray(counts.sum(axis=1)).ravel() / total
    ctx = np.asarray(counts.sum(axis=0)).ravel() ** alpha
    ctx /= ctx.sum()
    pmi = np.log(coo.data / total / rows[coo.row] / ctx[coo.col])
    pos = pmi > 0
    m = sparse.csr_matrix((pmi[pos], (coo.row[pos], coo.col[pos])), shape=counts.shape)
    k = min(dim, min(m.shape) - 1)
    u, s, _ = randomized_svd(m, k, random_state=seed)
    out = np.zeros((m.shape[0], dim))
    out[:, :k] = u * np.sqrt(s)
    return out


def init_from_cooccurrence(weight, rows: Iterable[np.ndarray], window: int, separators: set[int],
                           specials: set[int], max_tokens: int, seed: int) -> dict:
    """Overwrite the rows of ``weight`` (a (vocab, d) embedding tensor) for every token seen in
    ``rows`` with its scaled co-occurrence vector; returns what was done (for the summary)."""
    import torch

    t0 = time.time()
    vocab, dim = weight.shape
    stream = _stream(rows, max_tokens)
    counts = cooccurrence_counts(stream, vocab, window, separators, specials)
    seen = np.flatnonzero(np.asarray(counts.sum(axis=1)).ravel() > 0)
    if len(seen) < 2:
        return {"kind": "cooccurrence", "skipped": "fewer than two tokens co-occur", "tokens": int(len(stream))}
    vec = ppmi_svd(counts, dim, seed)[seen]
    with torch.no_grad():
        target = float(weight.detach().float().norm(dim=1).mean())
        scale = target / max(float(np.linalg.norm(vec, axis=1).mean()), 1e-12)
        weight[torch.from_numpy(seen)] = torch.from_numpy(vec * scale).to(weight.dtype)
    return {"kind": "cooccurrence", "window": window, "tokens": int(len(stream)), "vocab_rows": int(len(seen)),
            "of_vocab": int(vocab), "seconds": round(time.time() - t0, 1)}


def row_iter(dataset) -> Iterable[np.ndarray]:
    """The windows of a :class:`~lmforge.data.shards.PackedDataset`, shard by shard, as one flat stream."""
    for m in dataset.maps:
        if len(m):
            yield np.asarray(m).reshape(-1)
