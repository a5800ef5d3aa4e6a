"""``lmforge generate``: sample from a decoder checkpoint with temperature, top-k and top-p,
using the KV cache (one new token per forward pass after the prompt)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from lmforge.models.config import ModelConfig
from lmforge.models.layers import KVCache
from lmforge.models.transformer import LanguageModel, build_lm
from lmforge.training import checkpoint as ckpt
from lmforge.errors import ArtifactError, ModelError


def load_checkpoint_model(path: str | Path) -> tuple[LanguageModel, dict]:
    path = Path(path)
    if path.is_dir() and not (path / "state.json").exists():
        cks = ckpt.list_checkpoints(path / "checkpoints" if (path / "checkpoints").is_dir() else path)
        if not cks:
            raise ckpt.CheckpointError(f"{path}: no checkpoint found (expected step_NNNNNNN/ folders)")
        path = cks[-1]
    if not (path / "state.json").is_file():
        raise ckpt.CheckpointError(f"{path}: not a checkpoint (no state.json)")
    state = json.loads((path / "state.json").read_text())
    model = build_lm(ModelConfig(**state["model"]))
    ckpt.load(path, model, None, restore_rng=False)
    model.eval()
    state["path"] = path
    return model, state


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


def generate_text(checkpoint: str, prompt: str, max_new_tokens: int = 100, temperature: float = 0.8,
                  top_k: Optional[int] = 50, top_p: Optional[float] = 0.95, seed: int = 0,
                  tokenizer: Optional[str] = None) -> str:
    from tokenizers import Tokenizer

    model, state = load_checkpoint_model(checkpoint)
    tok_dir = Path(tokenizer) if tokenizer else (state["path"] / state.get("tokenizer_dir", "../../tokenizer")).resolve()
    tok_file = tok_dir / "tokenizer.json" if tok_dir.is_dir() else tok_dir
    if not tok_file.is_file():
        raise ArtifactError(f"no tokenizer at {tok_dir}: pass --tokenizer")
    tok = Tokenizer.from_file(str(tok_file))
    ids = tok.encode(prompt, add_special_tokens=False).ids
    if not ids:
        bos = tok.token_to_id("<s>")
        ids = [bos if bos is not None else 0]
    eos = tok.token_to_id("</s>")
    out = generate(model, torch.tensor([ids]), max_new_tokens, temperature, top_k, top_p, eos, seed)
    return tok.decode(out[0].tolist(), skip_special_tokens=True)
