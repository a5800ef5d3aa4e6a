"""Pixel and label array conversions shared by the image readers.

Arrays arrive as (N, H, W), (N, H, W, C) or (N, C, H, W) in any integer or float dtype; they
leave as uint8 (N, C, H, W) with the configured channel count and size. Integer labels become
their names.
"""

from __future__ import annotations

import sys
from typing import Optional

import numpy as np

from lmforge.errors import DataError

CHUNK = 4096  # images resized at once


def warn(msg: str, warnings: Optional[list[str]]) -> None:
    print(f"[data] warning: {msg}", file=sys.stderr, flush=True)
    if warnings is not None:
        warnings.append(msg)


def to_nchw(x: np.ndarray, path: str) -> np.ndarray:
    """(N, H, W) → (N, 1, H, W); (N, H, W, C) or (N, C, H, W) → (N, C, H, W) (channel-first when ambiguous)."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            return x.transpose(0, 3, 1, 2)
        if x.shape[1] in (1, 2, 3, 4):
            return x
        if x.shape[-1] == 2:
            return x.transpose(0, 3, 1, 2)
    raise DataError(f"{path}: images of shape {tuple(x.shape)}; expected (N, H, W), (N, H, W, C) or (N, C, H, W) with C ≤ 4")


def to_uint8(x: np.ndarray, path: str, warnings: Optional[list[str]] = None) -> np.ndarray:
    """Pixels as uint8: floats in [0, 1] are scaled by 255, anything else rounded and clipped to
    0..255 (the clipped values counted in a warning)."""
    if x.dtype == np.uint8:
        return x
    if x.dtype == np.bool_:
        return x.astype(np.uint8) * 255
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise DataError(f"{path}: images of dtype {x.dtype}; expected integers or floats")
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.floating):
        finite = np.isfinite(x)
        if finite.all() and x.size and x.min() >= 0 and x.max() <= 1:
            return np.rint(x * 255).astype(np.uint8)
        bad = int((~finite).sum())
        x = np.rint(np.where(finite, x, 0))
    else:
        bad = 0
    bad += int(((x < 0) | (x > 255)).sum())
    if bad:
        warn(f"{path}: {bad:,} pixel value(s) outside 0..255 (or not finite) clipped", warnings)
    return np.clip(x, 0, 255).astype(np.uint8)


def to_channels(x: np.ndarray, c: Optional[int], path: str) -> np.ndarray:
    """uint8 (N, C, H, W) with ``c`` channels (luma for colour → gray, replicated gray → colour,
    alpha dropped or added as opaque)."""
    have = x.shape[1]
    if c is None or c == have:
        return x
    if c not in (1, 2, 3, 4) or have not in (1, 2, 3, 4):
        raise DataError(f"{path}: cannot convert {have}-channel images to {c} channels")

    def gray() -> np.ndarray:  # (N, 1, H, W)
        if have <= 2:
            return x[:, :1]
        luma = np.tensordot(np.array([0.299, 0.587, 0.114]), x[:, :3], axes=([0], [1]))  # (N, H, W)
        return np.rint(luma)[:, None].clip(0, 255).astype(np.uint8)

    def color() -> np.ndarray:  # (N, 3, H, W)
        return x[:, :3] if have >= 3 else np.repeat(x[:, :1], 3, axis=1)

    alpha = x[:, -1:] if have in (2, 4) else np.full_like(x[:, :1], 255)
    out = {1: gray, 2: lambda: np.concatenate([gray(), alpha], 1), 3: color,
           4: lambda: np.concatenate([color(), alpha], 1)}[c]()
    return np.ascontiguousarray(out)


def resize(x: np.ndarray, size: Optional[list[int]]) -> np.ndarray:
    """uint8 (N, C, H, W) resized to ``size`` [H, W] (bilinear, antialiased when shrinking)."""
    if size is None or list(x.shape[2:]) == list(size):
        return x
    import torch
    import torch.nn.functional as F

    out = np.empty((len(x), x.shape[1], *size), dtype=np.uint8)
    for i in range(0, len(x), CHUNK):
        t = torch.from_numpy(np.array(x[i:i + CHUNK], dtype=np.float32))
        t = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
        out[i:i + CHUNK] = t.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def label_texts(labels: np.ndarray, names: Optional[list[str]], path: str) -> list[Optional[str]]:
    """Integer labels → ``names[i]`` (or the integer as text); text labels as they are. A label
    with no name becomes None (rejected by the caller as ``unknown_label``)."""
    if labels.ndim != 1:
        labels = labels.reshape(len(labels), -1)
        if labels.shape[1] != 1:
            raise DataError(f"{path}: labels of shape {labels.shape}; expected one label per image")
        labels = labels[:, 0]
    if labels.dtype.kind in "US":
        return [v.decode() if isinstance(v, bytes) else str(v) for v in labels.tolist()]
    if labels.dtype.kind == "f" and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)
    if labels.dtype.kind not in "iub":
        raise DataError(f"{path}: labels of dtype {labels.dtype}; expected integers or text")
    uniq, inv = np.unique(labels.astype(np.int64), return_inverse=True)
    text = [(names[v] if 0 <= v < len(names) else None) if names else str(v) for v in uniq.tolist()]
    return [text[i] for i in inv.tolist()]
