"""Pieces the kinds' ``inputs`` entries share (:mod:`lmforge.inference.image_inputs`,
:mod:`~lmforge.inference.audio_inputs`): the graph wrapper that applies the train split's
normalization inside an exported model, and the bytes of a base64 request field."""

from __future__ import annotations

import base64
import binascii

import torch
from torch import nn

from lmforge.errors import InputError


class Normalized(nn.Module):
    """``model((x / divisor - mean) / std)``, ``x`` cast to float32 first: raw uint8 pixels
    (divisor 255, per-channel mean/std) or log-mel spectrograms (divisor 1, one mean/std)."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor, divisor: float = 1.0):
        super().__init__()
        self.model, self.divisor = model, divisor
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x.to(torch.float32) / self.divisor - self.mean) / self.std)


def base64_bytes(text: str) -> bytes:
    """The bytes of a base64 string (a ``data:...;base64,`` prefix is accepted); an InputError otherwise."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("not base64 (send the file's bytes base64-encoded, or upload it as multipart)") from None
