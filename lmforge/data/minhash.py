"""Vectorized MinHash signatures and LSH band keys for near-duplicate detection.

A document's shingles are its overlapping word n-grams (words = runs of letters/digits after
lowercasing; any non-ASCII byte counts as a letter). Everything is computed for a whole batch
of documents at once with NumPy — word boundaries, word hashes, shingle hashes and the
per-permutation minima — so the cost per document is a few array passes, not a Python loop
over its words:

* word hash: polynomial hash of the word's bytes from prefix sums mod 2^64, then a
  splitmix64 finalizer;
* shingle hash: the n word hashes combined and finalized again;
* permutation ``p``: ``(a_p * h + b_p) mod 2^64 >> 32`` (multiply-shift hashing), and the
  signature is the minimum over the document's shingles (``np.minimum.reduceat``).

Documents with fewer than ``ngram`` words get one shingle made of all their words; documents
with no word at all have no signature (``has_sig`` is False) and are left to exact dedup.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_BASE = np.uint64(0x100000001B3)  # odd, so invertible mod 2^64
_WORD_BYTE = np.zeros(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyz0123456789":
    _WORD_BYTE[_c] = True
_WORD_BYTE[128:] = True


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer, elementwise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


@lru_cache(maxsize=1)  # one table at a time: 16 bytes per entry
def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """BASE^i and BASE^-i mod 2^64 for i < n (n rounded up to limit recomputation)."""
    inv = pow(int(_BASE), -1, 1 << 64)
    with np.errstate(over="ignore"):
        p = np.full(n, _BASE, dtype=np.uint64)
        p[0] = 1
        q = np.full(n, np.uint64(inv), dtype=np.uint64)
        q[0] = 1
        return np.cumprod(p, dtype=np.uint64), np.cumprod(q, dtype=np.uint64)


def candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """P(two documents at this true Jaccard share a band key): ``1 - (1 - s^rows)^bands``."""
    return 1.0 - (1.0 - similarity ** rows) ** bands


def recall_bands(threshold: float, num_perm: int, min_recall: float = 0.99) -> tuple[int, int]:
    """Bands b and rows r chosen for recall: the longest bands (fewest false candidates) for which
    a pair exactly at ``threshold`` becomes a candidate with probability ≥ ``min_recall`` (pairs
    above it more often still). The candidates are then verified, so extra ones cost time, never
    precision. With 128 permutations: 21 × 6 at 0.8 (by the formula: 0.998 at 0.80, 0.9999999 at 0.90)."""
    for r in range(num_perm, 0, -1):
        b = num_perm // r
        if candidate_probability(threshold, b, r) >= min_recall:
            return b, r
    return num_perm, 1


class MinHasher:
    """Signatures and band keys for batches of texts; deterministic for a seed."""

    def __init__(self, num_perm: int = 128, ngram: int = 5, seed: int = 0, bands: int | None = None,
                 threshold: float = 0.8, min_recall: float = 0.99):
        self.num_perm, self.ngram = num_perm, ngram
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 1 << 63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.b = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64)
        self.combine = rng.integers(1, 1 << 63, size=max(ngram, 1), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        if bands is None:
            self.bands, self.rows = recall_bands(threshold, num_perm, min_recall)
        else:
            self.bands, self.rows = bands, max(num_perm // bands, 1)

    # -- shingles ----------------------------------------------------------------------
    def shingles(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(shingle hashes uint64, owning document index int64), ordered by document."""
        encoded = [t.lower().encode("utf-8", "surrogatepass") for t in texts]
        lens = np.fromiter((len(e) + 1 for e in encoded), dtype=np.int64, count=len(encoded))
        doc_start = np.zeros(len(encoded), dtype=np.int64)
        if len(encoded) > 1:
            doc_start[1:] = np.cumsum(lens[:-1])
        buf = np.frombuffer(b" ".join(encoded) + b" ", dtype=np.uint8)
        isw = _WORD_BYTE[buf]
        edges = np.diff(np.concatenate(([False], isw, [False])).astype(np.int8))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1)
        if len(starts) == 0:
            return np.zeros(0, np.uint64), np.zeros(0, np.int64)
        n_pow = max(1 << int(len(buf)).bit_length(), 1 << 21)  # reuse one 2M-entry table for batches up to 2 MB
        pw, ipw = _powers(n_pow)
        with np.errstate(over="ignore"):
            prefix = np.zeros(len(buf) + 1, dtype=np.uint64)
            np.cumsum(buf.astype(np.uint64) * pw[: len(buf)], dtype=np.uint64, out=prefix[1:])
            words = _mix((prefix[ends] - prefix[starts]) * ipw[starts])
        word_doc = np.searchsorted(doc_start, starts, side="right") - 1
        n = self.ngram
        m = len(words)
        # full n-grams that stay inside one document
        if m >= n:
            k = m - n + 1
            same = word_doc[n - 1:] == word_doc[:k]
            with np.errstate(over="ignore"):
                sh = np.zeros(k, dtype=np.uint64)
                for i in range(n):
                    sh = sh + words[i:i + k] * self.combine[i]
            sh_doc = word_doc[:k][same]
            sh = _mix(sh[same])
        else:
            sh, sh_doc = np.zeros(0, np.uint64), np.zeros(0, np.int64)
        # documents with 1..n-1 words: one shingle from all their words
        counts = np.bincount(word_doc, minlength=len(texts))
        short = np.flatnonzero((counts > 0) & (counts < n))
        if len(short):
            first = np.searchsorted(word_doc, short)
            extra = np.zeros(len(short), dtype=np.uint64)
            with np.errstate(over="ignore"):
                for i in range(n - 1):
                    ok = i < counts[short]
                    idx = np.minimum(first + i, m - 1)
                    extra = extra + np.where(ok, words[idx] * self.combine[i], np.uint64(0))
            sh = np.concatenate([sh, _mix(extra)])
            sh_doc = np.concatenate([sh_doc, short])
            order = np.argsort(sh_doc, kind="stable")
            sh, sh_doc = sh[order], sh_doc[order]
        return sh, sh_doc

    # -- signatures --------------------------------------------------------------------
    def signatures(self, texts: list[str], shingles: tuple[np.ndarray, np.ndarray] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """(signatures (n, num_perm) uint32, has_sig (n,) bool). ``shingles`` = the texts'
        :meth:`shingles` when already computed (by this or another hasher of the same ``ngram``:
        a second hasher then draws its own permutations over the same shingle sets)."""
        n = len(texts)
        sig = np.full((n, self.num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        sh, sh_doc = shingles if shingles is not None else self.shingles(texts)
        has = np.zeros(n, dtype=bool)
        if len(sh) == 0:
            return sig, has
        docs, seg = np.unique(sh_doc, return_index=True)
        has[docs] = True
        shift = np.uint64(32)
        with np.errstate(over="ignore"):
            for p in range(self.num_perm):
                v = ((sh * self.a[p] + self.b[p]) >> shift).astype(np.uint32)
                sig[docs, p] = np.minimum.reduceat(v, seg)
        return sig, has

    def band_keys(self, sig: np.ndarray) -> np.ndarray:
        """(n, bands) uint64 keys: documents sharing a key in any band are candidates."""
        n = sig.shape[0]
        keys = np.zeros((n, self.bands), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for j in range(self.bands):
                h = np.full(n, np.uint64(j + 1) * np.uint64(0x9E3779B97F4A7C15), dtype=np.uint64)
                for c in range(j * self.rows, (j + 1) * self.rows):
                    h = _mix(h ^ sig[:, c].astype(np.uint64))
                keys[:, j] = h
        return keys


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Row-wise fraction of equal signature entries (an unbiased Jaccard estimate)."""
    return (sig_a == sig_b).mean(axis=-1)


def exact_shingle_jaccard(hasher: MinHasher, a: str, b: str) -> float:
    """True Jaccard similarity of two texts' shingle sets (for tests and benchmarks)."""
    sa, _ = hasher.shingles([a])
    sb, _ = hasher.shingles([b])
    A, B = set(sa.tolist()), set(sb.tolist())
    return len(A & B) / len(A | B) if A | B else 1.0
