"""Model FLOPs per token and the peak FLOP/s used for MFU."""

from __future__ import annotations

import torch

from lmforge.models.config import ModelConfig

# dense bf16 peak per GPU (no sparsity); fp32 CPU peak of the 2-core AVX2-FMA reference machine
GPU_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}
CPU_PEAK = 128e9


def flops_per_token(cfg: ModelConfig, n_params: int, seq_len: int) -> float:
    """Training FLOPs per token: 6·N for the weights plus 12·L·C·T for attention (PaLM appendix B)."""
    return 6 * n_params + 12 * cfg.n_layer * cfg.d_model * seq_len


def detect_peak(device: torch.device) -> float:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, v in GPU_PEAK.items():
            if key in name:
                return v
        return 0.0
    return CPU_PEAK
