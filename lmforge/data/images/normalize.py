"""Pixel normalization: uint8 images to float32 model inputs, with statistics of the train split only.

Every kind is ``(pixels / 255 - mean) / std`` per channel:

* ``mean_std`` — mean and std of the train split's pixels (in [0, 1] units);
* ``minmax01`` — mean 0, std 1: pixels / 255 in [0, 1];
* ``minmax11`` — mean 0.5, std 0.5: pixels / 127.5 - 1 in [-1, 1].

:meth:`Normalizer.fit` also records the train split's own mean/std (``pixel_mean``/``pixel_std``)
for the report, whatever the kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from lmforge.errors import DataError

KINDS = ("mean_std", "minmax01", "minmax11")
CHUNK_PIXELS = 1 << 23  # pixel values summed at once


@dataclass
class Normalizer:
    kind: str
    mean: list[float] = field(default_factory=list)  # per channel, in [0, 1] units
    std: list[float] = field(default_factory=list)
    pixel_mean: Optional[list[float]] = None  # the train split's statistics (report only)
    pixel_std: Optional[list[float]] = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise DataError(f"unknown normalization {self.kind!r}; expected one of {', '.join(KINDS)}")
        self._tensors: Optional[tuple[torch.Tensor, torch.Tensor]] = None

    @staticmethod
    def stats(images: np.ndarray) -> tuple[list[float], list[float]]:
        """Per-channel mean and std in [0, 1] units of uint8 (N, C, H, W) images: exact integer sums,
        taken a chunk at a time."""
        if images.dtype != np.uint8 or images.ndim != 4 or not len(images):
            raise DataError(f"normalization statistics need uint8 (N, C, H, W) images; got {images.dtype} "
                            f"{tuple(images.shape)}")
        c = images.shape[1]
        s1, s2 = np.zeros(c, dtype=np.uint64), np.zeros(c, dtype=np.uint64)
        step = max(1, CHUNK_PIXELS // (images.size // len(images)))
        for i in range(0, len(images), step):
            x = np.asarray(images[i:i + step]).transpose(1, 0, 2, 3).reshape(c, -1).astype(np.uint32)  # (C, n*H*W)
            s1 += x.sum(axis=1, dtype=np.uint64)
            s2 += (x * x).sum(axis=1, dtype=np.uint64)
        n = images.size // c
        mean = s1.astype(np.float64) / (n * 255.0)
        var = np.maximum(s2.astype(np.float64) / (n * 255.0 ** 2) - mean ** 2, 0.0)
        return mean.tolist(), np.sqrt(var).tolist()

    def fit(self, train: np.ndarray) -> "Normalizer":
        """Set the statistics from the train split's uint8 (N, C, H, W) images (never val/test)."""
        mean, std = self.stats(train)
        self.pixel_mean, self.pixel_std = mean, std
        c = len(mean)
        if self.kind == "mean_std":
            self.mean, self.std = mean, [s if s > 1e-6 else 1.0 for s in std]  # a constant channel stays as is
        elif self.kind == "minmax01":
            self.mean, self.std = [0.0] * c, [1.0] * c
        else:
            self.mean, self.std = [0.5] * c, [0.5] * c
        self._tensors = None
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """float32 (B, C, H, W) model input from uint8 pixels, or from floats already in [0, 1]."""
        if not self.mean:
            raise DataError("the normalizer has no statistics: call fit() or load it with from_dict()")
        if self._tensors is None:
            self._tensors = (torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1),
                             torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1))
        mean, std = (t.to(x.device) for t in self._tensors)
        if x.shape[1] != mean.shape[1]:
            raise DataError(f"images with {x.shape[1]} channel(s), the normalizer has {mean.shape[1]}")
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return (x - mean) / std

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] units from normalized (B, C, H, W) model inputs (for figures)."""
        mean, std = (torch.tensor(v, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
                     for v in (self.mean, self.std))
        return x.float() * std + mean

    def to_dict(self) -> dict:
        return {"kind": self.kind, "mean": self.mean, "std": self.std,
                "pixel_mean": self.pixel_mean, "pixel_std": self.pixel_std}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        try:
            n = cls(d["kind"], [float(v) for v in d["mean"]], [float(v) for v in d["std"]],
                    d.get("pixel_mean"), d.get("pixel_std"))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"not a normalizer description (kind, mean, std): {d!r} ({exc})") from None
        if len(n.mean) != len(n.std) or not n.mean or min(n.std) <= 0:
            raise DataError(f"normalizer: mean and std must be non-empty, of one length, std > 0; got {d!r}")
        return n
