"""``lmforge generate``: sample from a decoder checkpoint with temperature, top-k and top-p,
using the KV cache (one new token per forward pass after the prompt)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from lmforge.errors import ModelError
from lmforge.inference.config import GenerateConfig
from lmforge.layout import checkpoint_tokenizer
from lmforge.models.layers import KVCache
from lmforge.models.load import load_checkpoint_model
from lmforge.models.transformer import LanguageModel
from lmforge.tokenizer.io import load_folder


def sample_next(logits: torch.Tensor, temperature: float, top_k: Optional[int], top_p: Optional[float],
                generator: torch.Generator) -> torch.Tensor:
    """logits (B, V) → next ids (B,)."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p  # keep the smallest prefix whose mass reaches top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model: LanguageModel, ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: Optional[int] = None, top_p: Optional[float] = None, eos_id: Optional[int] = None,
             seed: int = 0) -> torch.Tensor:
    """ids (B, T) → (B, T + new). Stops early when every row produced ``eos_id``."""
    if not model.causal:
        raise ModelError("generation needs a decoder (causal LM) checkpoint")
    limit = model.cfg.max_seq_len - ids.shape[1]
    if limit <= 0:
        raise ModelError(f"the prompt has {ids.shape[1]} tokens; the model's max_seq_len is {model.cfg.max_seq_len}")
    g = torch.Generator().manual_seed(seed)
    cache = KVCache(model.cfg.n_layer)
    logits, _ = model(ids, cache=cache)
    out = [ids]
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    for _ in range(min(max_new_tokens, limit)):
        nxt = sample_next(logits[:, -1].float(), temperature, top_k, top_p, g)
        out.append(nxt[:, None])
        if eos_id is not None:
            done |= nxt == eos_id
            if done.all():
                break
        logits, _ = model(nxt[:, None], cache=cache)
    return torch.cat(out, dim=1)


def generate_text(cfg: GenerateConfig) -> str:
    """Sample a continuation of ``cfg.prompt``; an empty prompt starts from the tokenizer's BOS.
    The begin/end tokens are the tokenizer's own special tokens (read from its folder)."""
    model, state = load_checkpoint_model(cfg.checkpoint)
    tok_dir = Path(cfg.tokenizer) if cfg.tokenizer else checkpoint_tokenizer(state["path"], state)
    tok, special = load_folder(tok_dir)
    ids = tok.encode(cfg.prompt, add_special_tokens=False).ids
    if not ids:
        ids = [special["bos"] if special.get("bos") is not None else 0]
    out = generate(model, torch.tensor([ids]), cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p,
                   special.get("eos"), cfg.seed)
    return tok.decode(out[0].tolist(), skip_special_tokens=True)
