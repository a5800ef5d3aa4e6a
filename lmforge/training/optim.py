"""The one parameter-group builder and optimizer factory for every recipe, plus L1/L2 penalties.

Weight decay goes to weight matrices. By default embeddings, norms and biases are not decayed
(the GPT-3 / Chinchilla convention, and what lmforge always did); nanoGPT and HF Trainer also
decay embeddings — set ``decay_embeddings: true`` to match them. An optional head (the modules
named by ``head_prefixes``) can have its own learning rate; every group carries ``base_lr``,
which the schedule scales.
"""

from __future__ import annotations

import torch
from torch import nn


def param_groups(model: nn.Module, lr: float, weight_decay: float, *, head_lr: float | None = None,
                 head_prefixes: tuple[str, ...] = (), decay_embeddings: bool = False,
                 decay_norms_biases: bool = False) -> tuple[list[dict], list[torch.Tensor]]:
    """Groups of trainable parameters keyed by (head?, decayed?), in a fixed order; also returns
    the decayed tensors (for :func:`penalty`). Tied parameters are counted once."""
    groups: dict[tuple[bool, bool], list] = {}
    seen: set[int] = set()
    for mname, module in model.named_modules():
        for _, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            is_embedding = isinstance(module, nn.Embedding)
            decay = (p.ndim >= 2 and not is_embedding) or (is_embedding and decay_embeddings) or decay_norms_biases
            is_head = bool(head_prefixes) and mname.startswith(head_prefixes)
            groups.setdefault((is_head, decay), []).append(p)
    head = head_lr if head_lr is not None else lr
    out = [{"params": ps, "weight_decay": weight_decay if decay else 0.0,
            "lr": head if is_head else lr, "base_lr": head if is_head else lr}
           for (is_head, decay), ps in sorted(groups.items())]
    decayed = [p for (_, decay), ps in sorted(groups.items()) if decay for p in ps]
    return out, decayed


def build_optimizer(groups: list[dict], kind: str, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                    eps: float = 1e-8, momentum: float = 0.9) -> torch.optim.Optimizer:
    """AdamW (fused where the build supports it) or SGD with momentum."""
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps)


def apply_lr(optimizer: torch.optim.Optimizer, schedule, step: int) -> float:
    """Set every group's lr to ``schedule(step, base_lr)``; returns the first group's."""
    for g in optimizer.param_groups:
        g["lr"] = schedule(step, g["base_lr"])
    return optimizer.param_groups[0]["lr"]


def penalty(decayed: list[torch.Tensor], l1: float, l2: float) -> torch.Tensor | float:
    """``l1 * Σ|w| + l2 * Σw²`` over the decayed weights (0.0 when both are off)."""
    if not l1 and not l2:
        return 0.0
    total = 0.0
    for p in decayed:
        if l1:
            total = total + l1 * p.abs().sum()
        if l2:
            total = total + l2 * p.pow(2).sum()
    return total
