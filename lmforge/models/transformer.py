"""The Transformer body shared by encoder and decoder, the task heads, and the LM models.

Encoder and decoder are the same :class:`TransformerBody` (embeddings → blocks → optional
final norm); they differ only in whether attention is causal, which is a property of the
model (``causal``), not a flag sprinkled through the layers. Heads are separate modules.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.models.config import ModelConfig
from lmforge.models.layers import (MLP, Block, KVCache, MultiHeadAttention, RotaryEmbedding, SwiGLU, init_weights,
                                   make_norm, scaled_residual_init)
from lmforge.errors import ModelError


class Embeddings(nn.Module):
    """token (+ learned position) (+ token type) embeddings (→ LayerNorm) → dropout."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_seq_len, cfg.d_model) if cfg.pos == "learned" else None
        self.token_type = nn.Embedding(cfg.type_vocab_size, cfg.d_model) if cfg.type_vocab_size else None
        self.norm = make_norm(cfg) if cfg.embedding_norm else None
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, token_type_ids: Optional[torch.Tensor]) -> torch.Tensor:
        x = self.tok(ids)  # (B, T, C)
        if self.pos is not None:
            x = x + (self.pos(positions) if positions.dim() == 2 else self.pos(positions)[None])
        if self.token_type is not None:
            x = x + self.token_type(token_type_ids if token_type_ids is not None else torch.zeros_like(ids))
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)


class TransformerBody(nn.Module):
    def __init__(self, cfg: ModelConfig, causal: bool):
        super().__init__()
        self.cfg = cfg
        self.causal = causal
        self.embed = Embeddings(cfg)
        rope = RotaryEmbedding(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta) if cfg.pos == "rope" else None
        mlp = SwiGLU if cfg.mlp == "swiglu" else MLP
        self.blocks = nn.ModuleList(
            Block(MultiHeadAttention(cfg, i, rope), mlp(cfg), make_norm(cfg), make_norm(cfg), cfg.norm_position == "pre")
            for i in range(cfg.n_layer))
        self.final_norm = make_norm(cfg) if cfg.final_norm else None

    def forward(self, ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, cache: Optional[KVCache] = None,
                positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """ids (B, T) → hidden states (B, T, C).

        ``attention_mask``: (B, S) with 1 = real token, 0 = padding; or a boolean (B, 1, T, S)
        mask of allowed query→key pairs (packed rows: one block per example), together with
        ``positions`` (B, T) restarting at 0 for each packed example; per-row positions also serve rows
        of different lengths decoded together (batched generation: a left-padded cache and its mask).
        """
        B, T = ids.shape
        past = cache.length if cache is not None else 0
        if past + T > self.cfg.max_seq_len:
            raise ModelError(f"cannot run a sequence of length {past + T}: the model's max_seq_len is {self.cfg.max_seq_len}")
        if positions is None:
            positions = torch.arange(past, past + T, device=ids.device)
        mask = None
        if attention_mask is not None and attention_mask.dim() == 4:
            mask = attention_mask.to(torch.bool)
        elif attention_mask is not None:
            mask = attention_mask[:, None, None, :].to(torch.bool)  # (B, 1, 1, S): keys that may be attended
        x = self.embed(ids, positions, token_type_ids)
        for block in self.blocks:
            x = block(x, self.causal, mask, positions, cache)
        return self.final_norm(x) if self.final_norm is not None else x


class CausalLMHead(nn.Module):
    """Hidden states → next-token logits; weight tied to the token embedding when asked."""

    def __init__(self, cfg: ModelConfig, tok_embedding: nn.Embedding):
        super().__init__()
        self.proj = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.proj.weight = tok_embedding.weight

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(h)


class MaskedLMHead(nn.Module):
    """BERT's MLM head: dense → GELU → norm → vocabulary projection (tied) + bias. The GELU is
    the body's (exact, or tanh for ``mlp: gelu_tanh``), as HF's head uses ``hidden_act``."""

    def __init__(self, cfg: ModelConfig, tok_embedding: nn.Embedding):
        super().__init__()
        self.approximate = "tanh" if cfg.mlp == "gelu_tanh" else "none"
        self.dense = nn.Linear(cfg.d_model, cfg.d_model)
        self.norm = make_norm(cfg)
        self.proj = nn.Linear(cfg.d_model, cfg.vocab_size, bias=True)
        if cfg.tie_embeddings:
            self.proj.weight = tok_embedding.weight

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(F.gelu(self.dense(h), approximate=self.approximate)))


class LanguageModel(nn.Module):
    """A body plus an LM head. ``forward(ids, labels=None) -> (logits, loss)``.

    For a decoder, ``labels`` are the inputs themselves (shifted inside: position t predicts
    t+1); for an encoder they are the MLM targets with -100 where no prediction is scored, and
    the returned logits are those of the scored positions only, (N, V) in row-major order of
    ``labels != -100`` (the head is not run elsewhere). Without labels: logits (B, T, V).
    """

    def __init__(self, cfg: ModelConfig, body: TransformerBody, head: nn.Module):
        super().__init__()
        self.cfg, self.body, self.head = cfg, body, head

    @property
    def causal(self) -> bool:
        return self.body.causal

    def forward(self, ids: torch.Tensor, labels: Optional[torch.Tensor] = None, attention_mask=None,
                token_type_ids=None, cache: Optional[KVCache] = None):
        h = self.body(ids, attention_mask, token_type_ids, cache)  # (B, T, C)
        if labels is not None and not self.causal:
            # MLM: only the scored positions (~15%) go through the head and its vocabulary
            # projection, the largest matrix of a small encoder; logits are (N, V) for them
            scored = labels != -100  # (B, T)
            logits = self.head(h[scored])  # (N, V)
            return logits, F.cross_entropy(logits.float(), labels[scored])
        logits = self.head(h)  # (B, T, V)
        loss = None
        if labels is not None:
            if self.causal:
                logits_, labels_ = logits[:, :-1], labels[:, 1:]
            else:
                logits_, labels_ = logits, labels
            loss = F.cross_entropy(logits_.reshape(-1, logits_.size(-1)).float(), labels_.reshape(-1), ignore_index=-100)
        return logits, loss

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.body.embed.tok.weight.numel()
            if self.body.embed.pos is not None:
                n -= self.body.embed.pos.weight.numel()
        return n


def build_decoder_lm(cfg: ModelConfig) -> LanguageModel:
    body = TransformerBody(cfg, causal=True)
    model = LanguageModel(cfg, body, CausalLMHead(cfg, body.embed.tok))
    init_weights(model)
    scaled_residual_init(model, cfg.n_layer)
    return model


def build_encoder_mlm(cfg: ModelConfig) -> LanguageModel:
    body = TransformerBody(cfg, causal=False)
    model = LanguageModel(cfg, body, MaskedLMHead(cfg, body.embed.tok))
    init_weights(model)
    return model


def build_lm(cfg: ModelConfig) -> LanguageModel:
    return build_decoder_lm(cfg) if cfg.arch == "decoder" else build_encoder_mlm(cfg)
