"""Optimizer parameter groups, the optimizer, and the learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from lmforge.training.config import PretrainConfig


def param_groups(model: nn.Module, cfg: PretrainConfig) -> tuple[list[dict], list[torch.Tensor]]:
    """Decay matrices only (unless asked): norms, biases and embeddings get no weight decay.
    Returns the groups and the list of decayed tensors (for optional L1/L2 penalties)."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            is_matrix = p.ndim >= 2 and not isinstance(module, nn.Embedding)
            (decay if is_matrix or cfg.decay_norms_biases_embeddings else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return groups, decay


def build_optimizer(model: nn.Module, cfg: PretrainConfig, device: torch.device) -> tuple[torch.optim.Optimizer, list]:
    groups, decayed = param_groups(model, cfg)
    if cfg.optimizer == "adamw":
        fused = device.type in ("cuda", "cpu")
        try:
            opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=fused)
        except (RuntimeError, TypeError):
            opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    else:
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return opt, decayed


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warmup to ``lr``, then cosine/linear decay to ``min_lr`` at ``decay_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    if cfg.schedule == "constant":
        return cfg.lr
    total = cfg.decay_steps or cfg.max_steps
    if step >= total:
        return cfg.min_lr
    frac = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * frac)) if cfg.schedule == "cosine" else 1.0 - frac
    return cfg.min_lr + coeff * (cfg.lr - cfg.min_lr)


def penalty(decayed: list[torch.Tensor], l1: float, l2: float) -> torch.Tensor | float:
    if not l1 and not l2:
        return 0.0
    total = 0.0
    for p in decayed:
        if l1:
            total = total + l1 * p.abs().sum()
        if l2:
            total = total + l2 * p.pow(2).sum()
    return total
