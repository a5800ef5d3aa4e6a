"""Task heads on the shared Transformer body: sequence classification and token classification.

A task model is ``body`` + ``pooler`` (sequence tasks only) + ``classifier``, assembled by
:func:`build_classifier`; the pooling is a module chosen by the body's kind, not a flag read
inside the forward pass:

* encoder (BERT-style): the first token's hidden state → Linear → tanh (BERT's "pooler");
* decoder (GPT-style): the hidden state of the last non-padding token (GPT-2's ``score`` reads
  the same position), since only that position has seen the whole text.

The parameter layout mirrors Hugging Face's ``*ForSequenceClassification`` /
``*ForTokenClassification`` so the export in :mod:`lmforge.models.hf_tasks` is a renaming.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.kinds import pools
from lmforge.models.config import ModelConfig
from lmforge.models.transformer import TransformerBody

Task = Literal["sequence", "token"]


class FirstTokenPooler(nn.Module):
    """BERT's pooler: hidden state of the first ([CLS]) token → dense → tanh."""

    def __init__(self, d_model: int):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)

    def index(self, attention_mask: torch.Tensor) -> torch.Tensor:
        return torch.zeros(attention_mask.size(0), dtype=torch.long, device=attention_mask.device)

    def forward(self, h: torch.Tensor, attention_mask: torch.Tensor, index: Optional[torch.Tensor] = None) -> torch.Tensor:
        return torch.tanh(self.dense(_gather(h, attention_mask, self, index)))  # (N, C)


class LastTokenPooler(nn.Module):
    """Hidden state of the last real token of each row (right padding assumed)."""

    def index(self, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(attention_mask.size(1), device=attention_mask.device)
        return (positions * attention_mask.to(positions.dtype)).argmax(-1)  # (B,) rightmost mask==1

    def forward(self, h: torch.Tensor, attention_mask: torch.Tensor, index: Optional[torch.Tensor] = None) -> torch.Tensor:
        return _gather(h, attention_mask, self, index)  # (N, C)


def _gather(h: torch.Tensor, attention_mask: torch.Tensor, pooler, index: Optional[torch.Tensor]) -> torch.Tensor:
    """h (B, T, C) → (N, C): one position per row, or the (row, position) pairs ``index`` (N, 2)
    of examples packed several to a row."""
    if index is None:
        return h[torch.arange(h.size(0), device=h.device), pooler.index(attention_mask)]
    return h[index[:, 0], index[:, 1]]


class Classifier(nn.Module):
    """``forward(ids, attention_mask, labels=None) -> (logits, loss)``.

    Sequence task: logits (B, K). Token task: logits (B, T, K); labels -100 are not scored
    (padding, special tokens and non-first sub-tokens).
    """

    def __init__(self, cfg: ModelConfig, body: TransformerBody, task: Task, num_labels: int,
                 pooler: Optional[nn.Module], classifier: nn.Linear, dropout: float):
        super().__init__()
        self.cfg, self.body, self.task, self.num_labels = cfg, body, task, num_labels
        self.pools = pools(task)  # one vector per text (sequence) or a label per token
        self.pooler = pooler
        self.dropout = nn.Dropout(dropout)
        self.classifier = classifier

    @property
    def causal(self) -> bool:
        return self.body.causal

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor, labels: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, positions: Optional[torch.Tensor] = None,
                pool_index: Optional[torch.Tensor] = None):
        """``positions``/``pool_index`` come with packed rows (see :func:`lmforge.tasks.batching.pack`)."""
        h = self.body(ids, attention_mask, token_type_ids, positions=positions)  # (B, T, C)
        if self.pools:
            h = (self.pooler if self.pooler is not None else _LAST)(h, attention_mask, pool_index)  # (N, C)
        logits = self.classifier(self.dropout(h))  # (B, K) or (B, T, K)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, self.num_labels).float(), labels.reshape(-1), ignore_index=-100)
        return logits, loss


_LAST = LastTokenPooler()


def build_classifier(cfg: ModelConfig, body: TransformerBody, task: Task, num_labels: int,
                     dropout: Optional[float] = None) -> Classifier:
    """Head layout per body kind (matching HF): encoders get BERT's pooler and a biased classifier;
    decoders pool the last token and score it without bias (GPT-2's ``score``); token tasks use a
    biased per-token classifier for both."""
    p = cfg.dropout if dropout is None else dropout
    if pools(task) and not body.causal:
        pooler, classifier = FirstTokenPooler(cfg.d_model), nn.Linear(cfg.d_model, num_labels)
    elif pools(task):
        pooler, classifier = None, nn.Linear(cfg.d_model, num_labels, bias=False)
    else:
        pooler, classifier = None, nn.Linear(cfg.d_model, num_labels)
    for m in (pooler.dense if pooler is not None else None, classifier):
        if m is not None:
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return Classifier(cfg, body, task, num_labels, pooler, classifier, p)


def keep_layers(model: nn.Module, layers: list[int], key: str = "finetune.keep_layers") -> None:
    """Keep only ``layers`` (0-based) of ``model``'s body, in order; the config follows. ``model``
    is a :class:`Classifier` or a :class:`~lmforge.models.transformer.LanguageModel`."""
    from dataclasses import replace

    from lmforge.errors import ModelError

    n = len(model.body.blocks)
    if max(layers) >= n:
        raise ModelError(f"{key} {layers}: the starting model has {n} layers (0..{n - 1})")
    model.body.blocks = nn.ModuleList([model.body.blocks[i] for i in layers])
    model.cfg = replace(model.cfg, n_layer=len(layers))
    model.body.cfg = replace(model.body.cfg, n_layer=len(layers))
