"""Mixed precision and the optimizer step: autocast, loss scaling, backward, clip, step.

On CUDA with ``precision: bf16`` the forward runs under bf16 autocast; ``fp16`` adds a
``GradScaler``. On CPU everything runs in fp32. :meth:`Precision.step` unscales, clips the
gradient norm of the trainable parameters, steps and zeroes the gradients, and returns the norm.
"""

from __future__ import annotations

import contextlib

import torch


class Precision:
    """Autocast, loss scaling and the clipped optimizer step for one device and precision."""

    def __init__(self, device: torch.device, precision: str):
        self.enabled = device.type == "cuda" and precision != "fp32"
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if self.enabled and precision == "fp16" else None

    def autocast(self):
        return torch.autocast("cuda", dtype=self.dtype) if self.enabled else contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter],
             clip: float | None) -> torch.Tensor:
        """Clip to ``clip`` (None: measure only), step, zero the gradients; returns the grad norm."""
        if self.scaler:
            self.scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip if clip else float("inf"))
        if self.scaler:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return grad_norm

    @staticmethod
    def skip(optimizer: torch.optim.Optimizer) -> None:
        """Drop this step's gradients (a skipped non-finite step)."""
        optimizer.zero_grad(set_to_none=True)
