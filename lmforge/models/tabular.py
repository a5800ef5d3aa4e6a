"""Table models: linear, MLP, and an FT-Transformer built from our Transformer blocks.

Every model maps ``(x, cat)`` → (B, K), K = number of classes (or 1 for regression):

* ``x`` float32 (B, F): the preprocessed features — the first ``n_numeric`` columns are the
  scaled numeric features, the rest the one-hot / ordinal encoding of the categorical columns;
* ``cat`` int64 (B, G): the code of each categorical column, 0 = unknown, 1..K_g a category
  (``cat_cardinalities[g]`` = K_g + 1).

The linear model and the MLP read ``x`` only; the transformer reads the numeric part of ``x``
and ``cat`` (its embeddings replace the one-hot columns). L1/L2 penalties are the training
loop's: each model lists the tensors they apply to in ``penalized_weights()``.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from lmforge.errors import ModelError
from lmforge.models.config import ModelConfig
from lmforge.models.layers import init_weights, make_norm
from lmforge.models.vision import encoder_blocks

TABULAR_ARCHS = ("linear", "mlp", "tab_transformer")


def linear_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weight matrices of every ``nn.Linear`` in ``model``: what weight decay / L1 / L2
    apply to. Biases, norm scales, embeddings and the [CLS] token are left alone (as in the
    FT-Transformer paper)."""
    return [m.weight for m in model.modules() if isinstance(m, nn.Linear)]


class LinearModel(nn.Module):
    """One linear layer: logistic regression (K classes) or linear regression (K = 1)."""

    def __init__(self, n_features: int, num_outputs: int):
        super().__init__()
        self.linear = nn.Linear(n_features, num_outputs)

    def forward(self, x: torch.Tensor, cat: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.linear(x)  # (B, F) → (B, K)

    def penalized_weights(self) -> list[torch.Tensor]:
        return linear_weights(self)


class MLPModel(nn.Module):
    """[linear → (BN) → ReLU → dropout] per ``cfg.hidden`` size, then a linear layer to K."""

    def __init__(self, cfg: ModelConfig, n_features: int, num_outputs: int):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for size in cfg.hidden:
            layers += [nn.Linear(width, size)]
            layers += [nn.BatchNorm1d(size)] if cfg.batch_norm else []
            layers += [nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = size
        layers += [nn.Linear(width, num_outputs)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, cat: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.net(x)  # (B, F) → (B, K)

    def penalized_weights(self) -> list[torch.Tensor]:
        return linear_weights(self)


class FeatureTokenizer(nn.Module):
    """One d_model token per feature: numeric j → ``x_j * W_j + b_j``; categorical g → its
    embedding row (row 0 = unknown). Each column has its own W_j/b_j or table, so the tokens
    carry the column's identity without a separate feature-type embedding."""

    def __init__(self, d_model: int, n_numeric: int, cat_cardinalities: list[int]):
        super().__init__()
        self.n_numeric = n_numeric
        self.weight = nn.Parameter(torch.empty(n_numeric, d_model))
        self.bias = nn.Parameter(torch.empty(n_numeric, d_model))
        self.embeddings = nn.ModuleList(nn.Embedding(card, d_model) for card in cat_cardinalities)

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.weight.shape[1])  # the FT-Transformer's uniform(±1/sqrt(D))
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, cat: Optional[torch.Tensor]) -> torch.Tensor:
        tokens = [x[:, :self.n_numeric, None] * self.weight + self.bias]  # (B, n_numeric, D)
        if self.embeddings:
            if cat is None or cat.dim() != 2 or cat.shape[1] != len(self.embeddings):
                got = "none" if cat is None else tuple(cat.shape)
                raise ModelError(f"the model needs the codes of its {len(self.embeddings)} categorical columns "
                                 f"as a (batch, {len(self.embeddings)}) tensor; got {got}")
            tokens += [torch.stack([emb(cat[:, g]) for g, emb in enumerate(self.embeddings)], dim=1)]  # (B, G, D)
        return torch.cat(tokens, dim=1)  # (B, n_numeric + G, D)


class TabTransformer(nn.Module):
    """FT-Transformer: feature tokens + [CLS] → dropout → our blocks (non-causal) → norm →
    linear head on [CLS]. Reads ``x[:, :n_numeric]`` and ``cat``, not the one-hot columns."""

    def __init__(self, cfg: ModelConfig, n_numeric: int, cat_cardinalities: list[int], num_outputs: int):
        super().__init__()
        self.tokenizer = FeatureTokenizer(cfg.d_model, n_numeric, cat_cardinalities)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = encoder_blocks(cfg)
        self.final_norm = make_norm(cfg) if cfg.final_norm else nn.Identity()
        self.head = nn.Linear(cfg.d_model, num_outputs)
        init_weights(self)
        self.tokenizer.reset_parameters()
        nn.init.normal_(self.cls, 0.0, 0.02)

    def forward(self, x: torch.Tensor, cat: Optional[torch.Tensor] = None) -> torch.Tensor:
        tokens = self.tokenizer(x, cat)  # (B, T, D), T = n_numeric + G
        cls = self.cls.expand(tokens.shape[0], -1, -1)  # (B, 1, D)
        h = self.dropout(torch.cat([cls, tokens], dim=1))  # (B, 1 + T, D); no positions: columns are a set
        for block in self.blocks:
            h = block(h, False, None, None, None)
        return self.head(self.final_norm(h)[:, 0])  # (B, K)

    def penalized_weights(self) -> list[torch.Tensor]:
        return linear_weights(self)


def build_tabular_model(cfg: ModelConfig, n_features: int, n_numeric: int, cat_cardinalities: list[int],
                        num_outputs: int) -> nn.Module:
    """The table model ``cfg.arch`` names, for ``n_features`` preprocessed columns (the first
    ``n_numeric`` numeric), categorical columns of the given cardinalities (unknown code
    included), and ``num_outputs`` outputs (classes, or 1 for regression)."""
    cards = [int(c) for c in cat_cardinalities]
    if not 0 <= n_numeric <= n_features:
        raise ModelError(f"n_numeric={n_numeric} must be between 0 and n_features={n_features}")
    if any(c < 1 for c in cards):
        raise ModelError(f"every categorical cardinality must be >= 1 (the unknown code included); got {cards}")
    if num_outputs < 1:
        raise ModelError(f"num_outputs must be >= 1; got {num_outputs}")
    if cfg.arch == "linear":
        return LinearModel(n_features, num_outputs)
    if cfg.arch == "mlp":
        return MLPModel(cfg, n_features, num_outputs)
    if cfg.arch == "tab_transformer":
        if n_numeric == 0 and not cards:
            raise ModelError("tab_transformer needs numeric or categorical columns; the table has neither")
        return TabTransformer(cfg, n_numeric, cards, num_outputs)
    raise ModelError(f"model.arch={cfg.arch!r} is not a table model; choose one of {', '.join(TABULAR_ARCHS)}")


def tabular_model_from_record(cfg: ModelConfig, record: dict) -> nn.Module:
    """The model a saved table model's record (columns, cardinalities, outputs) describes."""
    return build_tabular_model(cfg, int(record["n_features"]), int(record["n_numeric"]),
                               [int(c) for c in record["cat_cardinalities"]], int(record["num_outputs"]))
