"""Building blocks: norms, rotary embeddings, attention (SDPA, KV cache), MLPs, blocks.

Shapes: B = batch, T = query length, S = key length (cache + T), C = d_model,
H = heads, D = head size.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.models.config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def make_norm(cfg: ModelConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return RMSNorm(cfg.d_model, cfg.norm_eps)
    return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=cfg.bias)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (rotate-half convention, as in Llama/GPT-NeoX)."""

    def __init__(self, head_dim: int, max_seq_len: int, theta: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        t = torch.arange(max_seq_len, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)  # (T, D/2)
        emb = torch.cat([freqs, freqs], dim=-1)  # (T, D)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    @staticmethod
    def _rotate_half(x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([-x2, x1], dim=-1)

    def forward(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``positions``: (T,) shared by every row, or (B, T) per row (rows of different lengths)."""
        cos, sin = self.cos[positions].to(q.dtype), self.sin[positions].to(q.dtype)  # (T, D) or (B, T, D)
        cos, sin = (cos[:, None], sin[:, None]) if positions.dim() == 2 else (cos[None, None], sin[None, None])
        return q * cos + self._rotate_half(q) * sin, k * cos + self._rotate_half(k) * sin


class KVCache:
    """Per-layer key/value cache for incremental decoding."""

    def __init__(self, n_layer: int):
        self.k: list[Optional[torch.Tensor]] = [None] * n_layer
        self.v: list[Optional[torch.Tensor]] = [None] * n_layer

    @classmethod
    def from_stacked(cls, keys: torch.Tensor, values: torch.Tensor) -> "KVCache":
        """A cache holding ``keys``/``values`` of shape (L, B, H, S, D) (S may be 0)."""
        cache = cls(keys.shape[0])
        cache.k, cache.v = list(keys.unbind(0)), list(values.unbind(0))
        return cache

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys, values), each (L, B, H, S, D)."""
        return torch.stack(self.k), torch.stack(self.v)

    @property
    def length(self) -> int:
        return self.layer_length(0)

    def layer_length(self, layer: int) -> int:
        return 0 if self.k[layer] is None else self.k[layer].shape[2]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k[layer] is not None:
            k = torch.cat([self.k[layer], k], dim=2)
            v = torch.cat([self.v[layer], v], dim=2)
        self.k[layer], self.v[layer] = k, v
        return k, v


class MultiHeadAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int, rope: Optional[RotaryEmbedding] = None):
        super().__init__()
        c = cfg.d_model
        self.n_head, self.head_dim, self.layer = cfg.n_head, cfg.head_dim, layer
        self.qkv_proj = nn.Linear(c, 3 * c, bias=cfg.bias)  # q, k, v stacked: one GEMM instead of three
        self.o_proj = nn.Linear(c, c, bias=cfg.bias)
        self.rope = rope
        self.attn_dropout = cfg.dropout  # on the attention probabilities (a float: SDPA takes dropout_p)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, causal: bool, attn_mask: Optional[torch.Tensor] = None,
                positions: Optional[torch.Tensor] = None, cache: Optional[KVCache] = None) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.qkv_proj(x).view(B, T, 3, self.n_head, self.head_dim)  # (B, T, 3, H, D)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, D)
        if self.rope is not None:
            q, k = self.rope(q, k, positions)
        past = 0
        if cache is not None:
            past = cache.layer_length(self.layer)
            k, v = cache.update(self.layer, k, v)  # (B, H, S, D)
        if causal and (past > 0 or attn_mask is not None):
            # queries at positions past..past+T-1 see keys 0..their own position
            S = k.shape[2]
            allowed = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=past)
            attn_mask = allowed if attn_mask is None else attn_mask & allowed
            causal = False
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal and attn_mask is None,
                                           dropout_p=self.attn_dropout if self.training else 0.0)  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_dropout(self.o_proj(y))


class MLP(nn.Module):
    """Two-layer MLP with GELU (exact or tanh approximation)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.ff_dim, bias=cfg.bias)
        self.down = nn.Linear(cfg.ff_dim, cfg.d_model, bias=cfg.bias)
        self.approximate = "tanh" if cfg.mlp == "gelu_tanh" else "none"
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.gelu(self.up(x), approximate=self.approximate)))


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate = nn.Linear(cfg.d_model, cfg.ff_dim, bias=cfg.bias)
        self.up = nn.Linear(cfg.d_model, cfg.ff_dim, bias=cfg.bias)
        self.down = nn.Linear(cfg.ff_dim, cfg.d_model, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.silu(self.gate(x)) * self.up(x)))


class Block(nn.Module):
    """attention + MLP with residuals; ``pre_norm`` places the norms before (GPT-2) or after (BERT)."""

    def __init__(self, attn: nn.Module, mlp: nn.Module, norm1: nn.Module, norm2: nn.Module, pre_norm: bool):
        super().__init__()
        self.attn, self.mlp, self.norm1, self.norm2 = attn, mlp, norm1, norm2
        self.pre_norm = pre_norm

    def forward(self, x: torch.Tensor, causal: bool, attn_mask=None, positions=None, cache=None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attn(self.norm1(x), causal, attn_mask, positions, cache)
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self.attn(x, causal, attn_mask, positions, cache))
        return self.norm2(x + self.mlp(x))


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """GPT-2/BERT initialization: normal(0, 0.02) weights, zero biases, unit norms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, std)
        elif isinstance(m, (nn.LayerNorm, RMSNorm)):
            nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


def scaled_residual_init(module: nn.Module, n_layer: int, std: float = 0.02) -> None:
    """GPT-2: output projections of each residual branch get std / sqrt(2 * n_layer)."""
    for name, p in module.named_parameters():
        if name.endswith("o_proj.weight") or name.endswith("down.weight"):
            nn.init.normal_(p, 0.0, std / math.sqrt(2 * n_layer))
