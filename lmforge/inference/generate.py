"""Sampling from a decoder: temperature, top-k and top-p over any step decoder
(:mod:`lmforge.inference.decoders`), streamed text with stop strings, and ``lmforge generate``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import torch

from lmforge.errors import ModelError
from lmforge.inference.config import GenerateConfig
from lmforge.inference.decoders import TorchDecoder
from lmforge.layout import checkpoint_tokenizer
from lmforge.models.load import load_checkpoint_model
from lmforge.models.transformer import LanguageModel
from lmforge.tokenizer.io import load_folder


def sample_next(logits: torch.Tensor, temperature: float, top_k: Optional[int], top_p: Optional[float],
                generator: torch.Generator) -> torch.Tensor:
    """logits (B, V) → next ids (B,)."""
    if temperature <= 0:
        return logits.argmax(-1)
    # in float64 (a temperature of 1e-137 is 0 in float32) and shifted by the row maximum first, so a
    # tiny temperature gives -inf for all but the best token, never inf - inf = NaN
    logits = logits.double()
    logits = (logits - logits.max(-1, keepdim=True).values) / temperature
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


def stream(decoder, ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: Optional[int] = None,
           top_p: Optional[float] = None, eos_id: Optional[int] = None, seed: int = 0,
           should_stop: Callable[[], bool] = lambda: False) -> Iterator[torch.Tensor]:
    """Sample up to ``max_new_tokens`` next ids (B,) from ``decoder`` (see
    :mod:`lmforge.inference.decoders`), one per iteration; stops early when every row has produced
    ``eos_id``, or before any forward pass once ``should_stop()`` is true (a cancelled request).
    The caller may also stop iterating at any time."""
    g = torch.Generator().manual_seed(seed)
    if should_stop():
        return
    logits = decoder.prefill(ids)
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    for i in range(max_new_tokens):
        nxt = sample_next(logits, temperature, top_k, top_p, g)
        yield nxt
        if eos_id is not None:
            done |= nxt == eos_id
            if done.all():
                return
        if i + 1 < max_new_tokens:
            if should_stop():
                return
            logits = decoder.step(nxt)


def check_room(cfg, prompt_len: int) -> int:
    """How many new tokens fit after a prompt of ``prompt_len`` tokens (a clear error if none)."""
    limit = cfg.max_seq_len - prompt_len
    if limit <= 0:
        raise ModelError(f"the prompt has {prompt_len} tokens; the model's max_seq_len is {cfg.max_seq_len}")
    return limit


def generate(model: LanguageModel, ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: Optional[int] = None, top_p: Optional[float] = None, eos_id: Optional[int] = None,
             seed: int = 0, use_cache: bool = True) -> torch.Tensor:
    """ids (B, T) → (B, T + new), with the KV cache (one new token per forward pass after the prompt)."""
    if not model.causal:
        raise ModelError("generation needs a decoder (causal LM) checkpoint")
    n = min(max_new_tokens, check_room(model.cfg, ids.shape[1]))
    new = list(stream(TorchDecoder(model, use_cache), ids, n, temperature, top_k, top_p, eos_id, seed))
    return torch.cat([ids] + [t[:, None] for t in new], dim=1)


class TextStream:
    """Token ids → text pieces, for streaming one completion.

    Each :meth:`push` returns the text that became final: the completion is decoded with the
    prompt in front (so word-level and byte-level tokenizers get their spaces right) and only the
    part that cannot still turn into a ``stop`` string is released. When a stop string appears the
    text is cut before it and :attr:`stopped` turns true."""

    def __init__(self, tokenizer, prompt_ids: list[int], stop: Sequence[str] = ()):
        self.tok, self.prompt, self.stop = tokenizer, list(prompt_ids), [s for s in stop if s]
        self.prefix = len(self._decode([]))
        self.new: list[int] = []
        self.sent = 0
        self.stopped = False

    def _decode(self, new: list[int]) -> str:
        return self.tok.decode(self.prompt + new, skip_special_tokens=True)

    @property
    def text(self) -> str:
        """The completion so far (cut at a stop string)."""
        full = self._decode(self.new)[self.prefix:]
        cut = min((i for i in (full.find(s) for s in self.stop) if i >= 0), default=-1)
        return full if cut < 0 else full[:cut]

    def push(self, token: int) -> str:
        self.new.append(token)
        full = self._decode(self.new)[self.prefix:]
        cut = min((i for i in (full.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped, ready = True, cut
        else:  # hold back a tail that may be the start of a stop string
            hold = max((k for s in self.stop for k in range(1, min(len(s), len(full) + 1)) if full.endswith(s[:k])),
                       default=0)
            ready = len(full) - hold
            # a character split over tokens (byte-level BPE) decodes as U+FFFD until its last byte
            # arrives: hold it back rather than send a replacement character that is never corrected
            while ready > self.sent and full[ready - 1] == "\ufffd":
                ready -= 1
        piece = full[self.sent:ready] if ready > self.sent else ""
        self.sent = max(self.sent, ready)
        return piece

    def flush(self) -> str:
        """What was held back, once generation has ended without a stop."""
        rest = self.text[self.sent:] if not self.stopped else ""
        self.sent += len(rest)
        return rest


def generate_stream(cfg: GenerateConfig) -> Iterator[str]:
    """Sample a continuation of ``cfg.prompt``, yielding the prompt's text first and then each
    piece of text as soon as it is final; an empty prompt starts from the tokenizer's BOS. The
    begin/end tokens are the tokenizer's own special tokens (read from its folder)."""
    model, state = load_checkpoint_model(cfg.checkpoint)
    tok_dir = Path(cfg.tokenizer) if cfg.tokenizer else checkpoint_tokenizer(state["path"], state)
    tok, special = load_folder(tok_dir)
    ids = tok.encode(cfg.prompt, add_special_tokens=False).ids
    if not ids:
        ids = [special["bos"] if special.get("bos") is not None else 0]
    n = min(cfg.max_new_tokens, check_room(model.cfg, len(ids)))
    yield tok.decode(ids, skip_special_tokens=True)
    text = TextStream(tok, ids)
    for nxt in stream(TorchDecoder(model), torch.tensor([ids]), n, cfg.temperature, cfg.top_k, cfg.top_p,
                      special.get("eos"), cfg.seed):
        piece = text.push(int(nxt[0]))
        if piece:
            yield piece
    rest = text.flush()
    if rest:
        yield rest


def generate_text(cfg: GenerateConfig) -> str:
    """The prompt and its sampled continuation as one string (see :func:`generate_stream`)."""
    return "".join(generate_stream(cfg))
