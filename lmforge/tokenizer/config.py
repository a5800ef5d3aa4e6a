"""Schema of the ``tokenizer`` section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class SpecialTokens:
    """Special tokens for causal (bos/eos/pad) and masked (mask/cls/sep) language models."""

    pad: str = "<pad>"
    unk: str = "<unk>"
    bos: str = "<s>"
    eos: str = "</s>"
    mask: str = "<mask>"
    cls: str = "<cls>"
    sep: str = "<sep>"


@dataclass
class TokenizerConfig:
    path: Optional[str] = field(default=None, metadata={"help": "use this tokenizer (HF directory or tokenizer.json) instead of training one"})
    type: Literal["bpe", "wordpiece", "unigram", "char"] = field(default="bpe", metadata={"help": "char = one token per character seen in the train split (char-rnn / nanoGPT shakespeare_char); vocab_size does not apply"})
    vocab_size: int = field(default=8000, metadata={"min": 64, "max": 4_000_000, "help": "bpe / wordpiece / unigram: target vocabulary size"})
    min_frequency: int = field(default=2, metadata={"min": 1})
    lowercase: bool = field(default=False, metadata={"help": "lowercase inside the tokenizer (typical for WordPiece/BERT)"})
    max_train_chars: int = field(default=200_000_000, metadata={"min": 1000, "help": "train on at most this many characters, a seeded sample of the train split"})
    special_tokens: SpecialTokens = field(default_factory=SpecialTokens)
