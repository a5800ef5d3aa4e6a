"""LoRA (Hu et al., 2021): a frozen ``nn.Linear`` plus a trainable low-rank update ``B @ A``.

Our own ~60 lines rather than ``peft``: our attention fuses q/k/v into one ``qkv_proj`` Linear,
checkpoints and HF export work on our parameter names, and export needs the update merged
back into plain weights (:func:`merge_lora`) — all simpler without an adapter framework in
between. ``B`` starts at zero, so a freshly wrapped model computes exactly what it did before.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lmforge.errors import ModelError


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float):
        super().__init__()
        self.base = base
        self.base.weight.requires_grad_(False)
        if self.base.bias is not None:
            self.base.bias.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / r
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.dropout(x) @ self.lora_a.t() @ self.lora_b.t()) * self.scale

    def merged(self) -> nn.Linear:
        """A plain Linear computing the same function (for export)."""
        out = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.scale * self.lora_b @ self.lora_a)
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out


def apply_lora(model: nn.Module, targets: list[str], r: int, alpha: float, dropout: float) -> int:
    """Wrap every Linear whose attribute name is in ``targets`` (e.g. qkv_proj, o_proj). Returns the count."""
    count = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if name in targets and isinstance(child, nn.Linear):
                setattr(module, name, LoRALinear(child, r, alpha, dropout))
                count += 1
    if count == 0:
        raise ModelError(f"finetune.lora.targets: no Linear layer named any of {targets} "
                         "(attention: qkv_proj, o_proj; MLP: up, down, gate)")
    return count


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every LoRALinear by its merged Linear, in place."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, name, child.merged())
    return model
