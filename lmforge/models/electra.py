"""Replaced-token detection (ELECTRA, Clark et al. 2020) as a model: a small masked-LM
*generator* proposes tokens at the masked positions, and the *discriminator* — the encoder that
is kept for fine-tuning — predicts for every position whether its token was replaced.

The discriminator is an ordinary :class:`~lmforge.models.transformer.TransformerBody` (``body``,
so everything that reads ``model.body`` — fine-tuning starts, export, embeddings — takes it as it
would an MLM encoder). The generator is the same architecture ``generator_ratio`` as wide; it reads
the discriminator's token embeddings through a projection, so the embedding table learns from both
losses, as in the paper; with ``model.tie_embeddings`` it also scores the vocabulary with them
(the paper's choice), else with an output matrix of its own. Sampling the replacements
draws from torch's global generator, which the pretraining loop seeds per (step, micro-batch).
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.models.config import ModelConfig
from lmforge.models.layers import init_weights, make_norm
from lmforge.models.transformer import TransformerBody


class RTDOutput(NamedTuple):
    """What a training forward returns in place of logits: the generator's logits at the masked
    positions (N, V), the discriminator's per-position logits (B, T) and which tokens were replaced."""

    gen_logits: torch.Tensor
    disc_logits: torch.Tensor
    replaced: torch.Tensor


def generator_config(cfg: ModelConfig, ratio: float) -> ModelConfig:
    """The generator's shape: the discriminator's layers and head size, ``ratio`` of its width
    (rounded to whole heads, at least one)."""
    hd = cfg.head_dim
    heads = max(1, round(cfg.n_head * ratio))
    return replace(cfg, n_head=heads, d_model=heads * hd, d_ff=4 * heads * hd)


class SharedTokens(nn.Module):
    """The discriminator's token embedding seen at the generator's width (a linear map when the
    widths differ)."""

    def __init__(self, tok: nn.Embedding, width: int):
        super().__init__()
        self.tok = tok
        self.proj = nn.Linear(tok.embedding_dim, width) if width != tok.embedding_dim else None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tok(ids)
        return self.proj(x) if self.proj is not None else x


class GeneratorHead(nn.Module):
    """Generator hidden states → vocabulary logits: through the shared embedding table (+ bias)
    when ``tied``, else through an output matrix of its own."""

    def __init__(self, gcfg: ModelConfig, tok: nn.Embedding, tied: bool):
        super().__init__()
        self.dense = nn.Linear(gcfg.d_model, tok.embedding_dim)
        self.norm = make_norm(replace(gcfg, d_model=tok.embedding_dim))
        self.proj = nn.Linear(tok.embedding_dim, tok.num_embeddings, bias=True)
        if tied:
            self.proj.weight = tok.weight

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(F.gelu(self.dense(h))))


class DiscriminatorHead(nn.Module):
    """Hidden states → one logit per position: was this token replaced?"""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.d_model, cfg.d_model)
        self.out = nn.Linear(cfg.d_model, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.dense(h))).squeeze(-1)


class ReplacedTokenDetection(nn.Module):
    """``forward(masked ids, MLM labels) -> (RTDOutput, gen_loss + disc_weight * disc_loss)``;
    without labels: the discriminator's per-position logits (B, T)."""

    def __init__(self, cfg: ModelConfig, generator_ratio: float, disc_weight: float):
        super().__init__()
        self.cfg, self.generator_ratio, self.disc_weight = cfg, generator_ratio, disc_weight
        self.body = TransformerBody(cfg, causal=False)
        self.head = DiscriminatorHead(cfg)
        gcfg = generator_config(cfg, generator_ratio)
        self.generator = TransformerBody(gcfg, causal=False)
        self.gen_head = GeneratorHead(gcfg, self.body.embed.tok, cfg.tie_embeddings)
        init_weights(self)
        self.generator.embed.tok = SharedTokens(self.body.embed.tok, gcfg.d_model)  # after init: keeps the table
        init_weights(self.generator.embed.tok.proj or nn.Identity())

    @property
    def causal(self) -> bool:
        return False

    def forward(self, ids: torch.Tensor, labels: Optional[torch.Tensor] = None, attention_mask=None,
                token_type_ids=None, cache=None):
        if labels is None:
            return self.head(self.body(ids, attention_mask, token_type_ids)), None
        scored = labels != -100  # (B, T) the masked positions
        gen_logits = self.gen_head(self.generator(ids, attention_mask, token_type_ids)[scored])  # (N, V)
        gen_loss = F.cross_entropy(gen_logits.float(), labels[scored])
        with torch.no_grad():  # the replacements: a sample from the generator (no gradient through it)
            sampled = torch.multinomial(F.softmax(gen_logits.detach().float(), -1), 1).squeeze(-1)
            original = torch.where(scored, labels, ids)
            corrupted = ids.clone()
            corrupted[scored] = sampled
            replaced = corrupted != original
        disc_logits = self.head(self.body(corrupted, attention_mask, token_type_ids))  # (B, T)
        disc_loss = F.binary_cross_entropy_with_logits(disc_logits.float(), replaced.float())
        return RTDOutput(gen_logits, disc_logits, replaced), gen_loss + self.disc_weight * disc_loss

    def num_params(self, non_embedding: bool = True) -> int:
        """The discriminator's parameters (the model that is kept), as an encoder counts them."""
        n = sum(p.numel() for p in self.body.parameters()) + sum(p.numel() for p in self.head.parameters())
        if non_embedding:
            n -= self.body.embed.tok.weight.numel()
            if self.body.embed.pos is not None:
                n -= self.body.embed.pos.weight.numel()
        return n


def build_rtd(cfg: ModelConfig, generator_ratio: float = 0.25, disc_weight: float = 50.0) -> ReplacedTokenDetection:
    if cfg.arch != "encoder":
        raise ValueError(f"replaced-token detection trains an encoder; got model.arch={cfg.arch}")
    return ReplacedTokenDetection(cfg, generator_ratio, disc_weight)
