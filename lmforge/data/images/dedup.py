"""Duplicate images: exact (content hash) and near (64-bit difference hash), and leaks across splits.

* **Exact**: a 64-bit hash of the shape and pixel bytes, computed for a whole array at once
  (each 8-byte word mixed with a key of its position, then summed); images with equal hashes
  are compared byte for byte, so a hash collision never removes an image.
* **Near**: dHash — the image shrunk to 9x8 grayscale, one bit per horizontally adjacent pair
  (left < right). Two images are near duplicates when their dHashes differ in at most
  ``max_hamming`` bits. Candidates come from splitting the 64 bits into ``max_hamming + 1``
  bands: two hashes that close agree exactly on at least one band (pigeonhole). A candidate
  counts only if the mean absolute pixel difference is also at most ``max_pixel_diff``: on small
  images a 64-bit dHash is coarse (on Fashion-MNIST, pairs within 2 bits differ by 0.1 of the
  pixel range on median; fewer than 1 in 10,000 of them are within 0.02).

The first image of a duplicate set is kept; each later one names the kept one it duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np

M1, M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
CHUNK_WORDS = 1 << 21  # 8-byte words hashed at once (16 MB)
PAIR_CHUNK = 1 << 20  # candidate pairs compared at once
PAIRS = (("val", "train"), ("test", "train"), ("val", "test"))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, in place on a uint64 array."""
    x ^= x >> np.uint64(30)
    x *= M1
    x ^= x >> np.uint64(27)
    x *= M2
    x ^= x >> np.uint64(31)
    return x


def popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return np.unpackbits(x.view(np.uint8).reshape(len(x), -1), axis=1).sum(axis=1)


def content_hashes(images: np.ndarray) -> np.ndarray:
    """uint64 (N,) hash of each image's shape and pixel bytes; ``images`` uint8 (N, ...)."""
    n = len(images)
    flat = images.reshape(n, -1)
    nbytes = flat.shape[1]
    words = -(-nbytes // 8)
    key = _mix(np.arange(1, words + 1, dtype=np.uint64))  # one key per word position
    shape_key = _mix(np.array([nbytes, *images.shape[1:]], dtype=np.uint64)).sum(dtype=np.uint64)
    out = np.empty(n, dtype=np.uint64)
    step = max(1, CHUNK_WORDS // max(words, 1))
    for i in range(0, n, step):
        rows = np.zeros((min(step, n - i), words * 8), dtype=np.uint8)
        rows[:, :nbytes] = flat[i:i + step]
        w = rows.view(np.uint64) ^ key  # (n, words)
        out[i:i + step] = _mix(w).sum(axis=1, dtype=np.uint64) ^ shape_key
    return _mix(out)


def exact_duplicates(images: np.ndarray, hashes: Optional[np.ndarray] = None) -> np.ndarray:
    """int64 (N,): for each image, the index of the first image with identical pixels (itself if none)."""
    h = content_hashes(images) if hashes is None else hashes
    order = np.argsort(h, kind="stable")
    hs = h[order]
    start = np.concatenate(([True], hs[1:] != hs[:-1]))
    first = order[np.flatnonzero(start)[np.cumsum(start) - 1]]  # per sorted position: its group's first index
    rep = np.empty(len(h), dtype=np.int64)
    rep[order] = first
    cand = np.flatnonzero(rep != np.arange(len(h)))
    if len(cand):  # confirm byte for byte: a hash collision is not a duplicate
        flat = images.reshape(len(images), -1)
        same = (flat[cand] == flat[rep[cand]]).all(axis=1)
        rep[cand[~same]] = cand[~same]
    return rep


def dhash(images: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """uint64 (N,) 64-bit difference hash of uint8 (N, C, H, W) images."""
    import torch
    import torch.nn.functional as F

    out = np.empty(len(images), dtype=np.uint64)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    for i in range(0, len(images), chunk):
        x = torch.from_numpy(np.array(images[i:i + chunk], dtype=np.float32))  # (n, C, H, W)
        g = (x[:, :3] * luma).sum(1, keepdim=True) if x.shape[1] >= 3 else x[:, :1]
        g = F.interpolate(g, size=(8, 9), mode="bilinear", align_corners=False, antialias=True)[:, 0]  # (n, 8, 9)
        bits = (g[:, :, :-1] < g[:, :, 1:]).reshape(len(g), 64).numpy()
        out[i:i + chunk] = np.packbits(bits, axis=1).view(">u8")[:, 0]
    return out


def _bands(max_hamming: int) -> list[tuple[int, int]]:
    k = max_hamming + 1
    edges = [round(64 * j / k) for j in range(k + 1)]
    return [(a, b - a) for a, b in zip(edges[:-1], edges[1:])]


def _agrees_on_a_band(xor: np.ndarray, bits: np.uint64, max_hamming: int) -> np.ndarray:
    """Whether each xor is zero on one of the bands within ``bits``."""
    out = np.zeros(len(xor), dtype=bool)
    for start, width in _bands(max_hamming):
        band = np.uint64((1 << width) - 1) << np.uint64(start)
        if band & bits == band:
            out |= (xor & band) == 0
    return out


def near_pairs(a: np.ndarray, b: Optional[np.ndarray], max_hamming: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Chunks of (index in a, index in b, Hamming distance) for dHashes at most ``max_hamming`` apart;
    with ``b=None``, pairs i < j within ``a``. A pair may come more than once (from several bands)."""
    self_pairs = b is None
    b = a if self_pairs else b
    earlier = np.uint64(0)  # bits of the bands already done: a pair agreeing on one came from it
    for start, width in _bands(max_hamming):
        mask = np.uint64((1 << width) - 1)
        ka, kb = (a >> np.uint64(start)) & mask, (b >> np.uint64(start)) & mask
        order = np.argsort(kb, kind="stable")
        kb_sorted = kb[order]
        hi = np.searchsorted(kb_sorted, ka, side="right")
        if self_pairs:  # partners after a's own position within its group of equal keys
            lo = np.empty(len(a), dtype=np.int64)
            lo[order] = np.arange(1, len(a) + 1)
        else:
            lo = np.searchsorted(kb_sorted, ka, side="left")
        count = hi - lo
        qa = np.flatnonzero(count > 0)
        cum = np.cumsum(count[qa])
        s = 0
        while s < len(qa):  # expand in slices of about PAIR_CHUNK pairs
            e = max(s + 1, int(np.searchsorted(cum, (cum[s - 1] if s else 0) + PAIR_CHUNK, side="right")))
            rows, n = qa[s:e], count[qa[s:e]]
            ia = np.repeat(rows, n)
            offs = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
            ib = order[np.repeat(lo[rows], n) + offs]
            xor = a[ia] ^ b[ib]
            dist = popcount(xor)
            ok = (dist <= max_hamming) & ~_agrees_on_a_band(xor, earlier, max_hamming)
            if ok.any():
                yield ia[ok], ib[ok], dist[ok]
            s = e
        earlier |= mask << np.uint64(start)


@dataclass
class Pixels:
    """Images and their pixel sums over disjoint windows (a 4x4 grid, then 8x8): the L1 distance
    of two images' window sums is at most that of their pixels, so a cheap check on 16 numbers
    rules out most candidates before any full comparison."""

    images: np.ndarray  # uint8 (N, C, H, W)
    thumbs: list[np.ndarray]  # float32 (N, C * gh * gw) per grid, coarsest first

    @classmethod
    def of(cls, images: np.ndarray, grids: tuple[int, ...] = (4, 8), chunk: int = 8192) -> "Pixels":
        import torch
        import torch.nn.functional as F

        h, w = images.shape[2:]
        thumbs = []
        for g in grids:
            k = (max(1, h // g), max(1, w // g))
            parts = [(F.avg_pool2d(torch.from_numpy(np.array(images[i:i + chunk], dtype=np.float32)), k) * (k[0] * k[1]))
                     .reshape(min(chunk, len(images) - i), -1).numpy() for i in range(0, len(images), chunk)]
            thumbs.append(np.concatenate(parts) if parts else np.zeros((0, 1), np.float32))
        return cls(images, thumbs)


def pixel_close(a: Pixels, b: Pixels, ia: np.ndarray, ib: np.ndarray, max_diff: Optional[float],
                chunk: int = 1 << 15) -> np.ndarray:
    """bool (P,): whether images ``a[ia]`` and ``b[ib]`` differ by at most ``max_diff`` in mean
    absolute pixel difference (pixels in [0, 1]); all true when ``max_diff`` is None."""
    if max_diff is None:
        return np.ones(len(ia), dtype=bool)
    fa, fb = a.images.reshape(len(a.images), -1), b.images.reshape(len(b.images), -1)
    limit = max_diff * 255 * fa.shape[1]
    live = np.arange(len(ia))
    for ta, tb in zip(a.thumbs, b.thumbs):  # lower bounds of the pixel distance, coarse to fine
        keep = np.concatenate([np.abs(ta[ia[live[i:i + chunk]]] - tb[ib[live[i:i + chunk]]]).sum(axis=1)
                               <= limit * (1 + 1e-5) for i in range(0, len(live), chunk)] or [np.zeros(0, bool)])
        live = live[keep]
    out = np.zeros(len(ia), dtype=bool)
    for i in range(0, len(live), chunk):
        rows = live[i:i + chunk]
        d = np.abs(fa[ia[rows]].astype(np.int16) - fb[ib[rows]]).sum(axis=1)  # (p,)
        out[rows] = d <= limit
    return out


def near_duplicates(images: np.ndarray, dh: np.ndarray, max_hamming: int,
                    max_diff: Optional[float] = None) -> tuple[np.ndarray, np.ndarray]:
    """(rep, dist): for each image, the earlier *kept* image within ``max_hamming`` dHash bits (and
    ``max_diff``, see :func:`pixel_close`) — itself when none — and their Hamming distance. Greedy
    in index order, so duplicates do not chain: no two kept images are near duplicates."""
    n = len(dh)
    rep, dist = np.arange(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    edges, px = [], Pixels.of(images) if max_diff is not None else Pixels(images, [])
    for x, y, d in near_pairs(dh, None, max_hamming):
        ok = pixel_close(px, px, x, y, max_diff)
        edges.append(np.stack([np.minimum(x, y)[ok], np.maximum(x, y)[ok], d[ok]]))
    if not edges:
        return rep, dist
    early, late, d = np.concatenate(edges, axis=1)
    order = np.lexsort((early, late))  # by the later image, then the earlier one
    for e, l, dd in zip(early[order].tolist(), late[order].tolist(), d[order].tolist()):
        if rep[l] == l and rep[e] == e:  # e is earlier, so whether it is kept is already decided
            rep[l], dist[l] = e, dd
    return rep, dist


def find_leaks(splits: dict[str, np.ndarray], max_hamming: int = 2,
               max_diff: Optional[float] = None) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """Images of val/test that also occur in train, and of val in test. ``splits`` maps a split to
    its uint8 (N, C, H, W) images. Per split pair ``(a, b)``: ``rows`` (leaked images of a),
    ``partner`` (one image of b each), ``dist`` (dHash bits apart) and ``exact`` (identical pixels).
    A leak is a dHash within ``max_hamming`` bits and pixels within ``max_diff`` (see
    :func:`pixel_close`); identical images always are."""
    present = [s for s, x in splits.items() if len(x)]
    hashes = {s: content_hashes(splits[s]) for s in present}
    dh = {s: dhash(splits[s]) for s in present}
    px = {s: Pixels.of(splits[s]) if max_diff is not None else Pixels(splits[s], []) for s in present}
    out = {}
    for a, b in PAIRS:
        if a not in hashes or b not in hashes:
            continue
        partner = np.full(len(dh[a]), -1, dtype=np.int64)
        dist = np.zeros(len(dh[a]), dtype=np.int64)
        for ia, ib, d in near_pairs(dh[a], dh[b], max_hamming):
            new = partner[ia] < 0
            new[new] = pixel_close(px[a], px[b], ia[new], ib[new], max_diff)
            partner[ia[new]], dist[ia[new]] = ib[new], d[new]
        exact = np.isin(hashes[a], hashes[b])
        cand = np.flatnonzero(exact)
        if len(cand):  # the identical partner, confirmed byte for byte
            ob = np.argsort(hashes[b], kind="stable")
            other = ob[np.searchsorted(hashes[b][ob], hashes[a][cand])]
            same = (splits[a][cand].reshape(len(cand), -1) == splits[b][other].reshape(len(cand), -1)).all(axis=1)
            exact[cand] = same
            partner[cand[same]], dist[cand[same]] = other[same], 0
        rows = np.flatnonzero(partner >= 0)
        out[(a, b)] = {"rows": rows, "partner": partner[rows], "dist": dist[rows], "exact": exact[rows]}
    return out


def summarize_leaks(found: dict, ids: Optional[dict[str, list[str]]] = None, examples: int = 5) -> dict:
    """Counts per split pair (``val-train``: exact, near) with a few examples ``[a id, b id, dHash bits]``."""
    name = (lambda s, i: ids[s][i]) if ids else (lambda s, i: f"{s}[{i}]")
    out = {}
    for (a, b), f in found.items():
        out[f"{a}-{b}"] = {"exact": int(f["exact"].sum()), "near": int((~f["exact"]).sum()),
                           "examples": [[name(a, int(r)), name(b, int(p)), int(d)]
                                        for r, p, d in zip(f["rows"][:examples], f["partner"], f["dist"])]}
    return out


def cross_split_leaks(splits: dict[str, np.ndarray], max_hamming: int = 2, max_diff: Optional[float] = None,
                      ids: Optional[dict[str, list[str]]] = None) -> dict:
    """:func:`find_leaks`, summarized: ``{"val-train": {"exact": n, "near": n, "examples": [...]}, ...}``
    (``near`` counts the leaks that are not identical)."""
    return summarize_leaks(find_leaks(splits, max_hamming, max_diff), ids)
