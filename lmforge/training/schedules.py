"""The learning-rate schedule of every recipe: linear warmup, then cosine / linear / constant
decay to a floor at ``total`` steps.

Two warmup ramps exist because both recipes must keep their published curves: ``"from_zero"``
(HF Trainer: ``lr * step / warmup``, step 0 has lr 0) for fine-tuning, and ``"nanogpt"``
(``lr * (step + 1) / (warmup + 1)``, never 0) for pretraining.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class WarmupDecay:
    """``schedule(step, peak_lr) -> lr``: linear warmup, then decay to ``floor`` at ``total``."""

    warmup: int
    total: int
    shape: Literal["cosine", "linear", "constant"] = "cosine"
    floor: float = 0.0  # absolute lr at and after ``total`` (pretrain min_lr); 0 for fine-tuning
    ramp: Literal["from_zero", "nanogpt"] = "from_zero"

    def __call__(self, step: int, peak: float) -> float:
        """The learning rate at ``step`` (0-based) for a group whose peak is ``peak``."""
        if step < self.warmup:
            if self.ramp == "nanogpt":
                return peak * (step + 1) / (self.warmup + 1)
            return peak * (step / max(1, self.warmup))
        if self.shape == "constant":
            return peak
        if step >= self.total:
            return self.floor
        frac = (step - self.warmup) / max(1, self.total - self.warmup)
        coeff = 0.5 * (1.0 + math.cos(math.pi * frac)) if self.shape == "cosine" else 1.0 - frac
        coeff = max(0.0, coeff)
        if self.floor == 0.0:
            return peak * coeff
        return self.floor + coeff * (peak - self.floor)
