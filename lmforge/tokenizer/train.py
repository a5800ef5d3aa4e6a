"""Train a BPE, WordPiece, Unigram or character tokenizer with HF ``tokenizers``, or load an existing one.

The saved folder is a Hugging Face tokenizer directory (``tokenizer.json``,
``tokenizer_config.json``, ``special_tokens_map.json``) that
``transformers.PreTrainedTokenizerFast.from_pretrained`` and ``AutoTokenizer`` load.
Special tokens come first in the vocabulary, in the order pad, unk, bos, eos, mask, cls, sep.

``type: char`` is the character-level vocabulary of char-rnn and nanoGPT's shakespeare_char:
one token per distinct character of the (sampled) train text, sorted by code point, after the
special tokens; characters never seen in training encode as unk. It is a ``tokenizers`` BPE
model with no merges and no pre-tokenizer, so every character, spaces and newlines included,
is its own token and decoding concatenates them (``vocab_size`` does not apply).

Memory: the trainer keeps word counts, not the text, so memory grows with the number of
distinct words, not the corpus. Text is streamed from the train split; when the split holds
more than ``max_train_chars`` characters, a seeded sample of documents (each kept with
probability max_train_chars / total, decided by a hash of its id) is used instead.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Iterator

import xxhash

from lmforge.tokenizer.config import TokenizerConfig


def special_token_list(cfg: TokenizerConfig) -> list[str]:
    st = cfg.special_tokens
    return [st.pad, st.unk, st.bos, st.eos, st.mask, st.cls, st.sep]


def normalizer(cfg: TokenizerConfig):
    """NFC, then lowercasing when ``cfg.lowercase``: what every tokenizer type applies first."""
    from tokenizers import normalizers

    return normalizers.Sequence([normalizers.NFC()] + ([normalizers.Lowercase()] if cfg.lowercase else []))


def build_untrained(cfg: TokenizerConfig):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    st = cfg.special_tokens
    specials = special_token_list(cfg)
    if cfg.type == "bpe":
        tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                      special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
    elif cfg.type == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=st.unk))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                            special_tokens=specials, show_progress=False)
    else:
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=cfg.vocab_size, special_tokens=specials, unk_token=st.unk,
                                          show_progress=False)
    tok.normalizer = normalizer(cfg)
    return tok, trainer


def sample_texts(docs: Iterable[dict], total_chars: int, max_chars: int, seed: int) -> Iterator[str]:
    """Stream texts, keeping each document with probability max_chars/total_chars (seeded by id)."""
    keep = 1.0 if total_chars <= max_chars else max_chars / total_chars
    cut = int(keep * (1 << 64)) if keep < 1 else None
    for d in docs:
        if cut is None or xxhash.xxh64_intdigest(d["id"].encode("utf-8", "surrogatepass"), seed=seed) < cut:
            yield d["text"]


def build_char(cfg: TokenizerConfig, alphabet: Iterable[str]):
    """A character tokenizer over ``alphabet`` (see the module docstring)."""
    from tokenizers import Tokenizer, decoders, models

    specials = special_token_list(cfg)
    chars = sorted(set(alphabet) - set(specials))
    vocab = {t: i for i, t in enumerate(specials + chars)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=cfg.special_tokens.unk))
    tok.normalizer = normalizer(cfg)
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(specials)
    return tok


def train(cfg: TokenizerConfig, texts: Iterable[str], out_dir: Path) -> dict:
    if cfg.type == "char":
        return _train_char(cfg, texts, out_dir)
    tok, trainer = build_untrained(cfg)
    n_chars = 0
    n_docs = 0

    def counted() -> Iterator[str]:
        nonlocal n_chars, n_docs
        for t in texts:
            n_chars += len(t)
            n_docs += 1
            yield t

    tok.train_from_iterator(counted(), trainer=trainer)
    if cfg.type == "wordpiece":
        from tokenizers import processors

        st = cfg.special_tokens
        tok.post_processor = processors.TemplateProcessing(
            single=f"{st.cls} $A {st.sep}", pair=f"{st.cls} $A {st.sep} $B:1 {st.sep}:1",
            special_tokens=[(st.cls, tok.token_to_id(st.cls)), (st.sep, tok.token_to_id(st.sep))])
    save_hf(tok, cfg, out_dir)
    return {"trained": True, "type": cfg.type, "train_docs": n_docs, "train_chars": n_chars}


def _train_char(cfg: TokenizerConfig, texts: Iterable[str], out_dir: Path) -> dict:
    norm = normalizer(cfg)
    seen: set[str] = set()
    n_chars = n_docs = 0
    for t in texts:
        t = norm.normalize_str(t)
        seen.update(t)
        n_chars += len(t)
        n_docs += 1
    save_hf(build_char(cfg, seen), cfg, out_dir)
    return {"trained": True, "type": "char", "train_docs": n_docs, "train_chars": n_chars, "alphabet": len(seen)}


def save_hf(tok, cfg: TokenizerConfig, out_dir: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    st = cfg.special_tokens
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=st.bos, eos_token=st.eos, unk_token=st.unk,
                                   pad_token=st.pad, mask_token=st.mask, cls_token=st.cls, sep_token=st.sep)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    (out_dir / "lmforge_tokenizer.json").write_text(json.dumps({"config": asdict(cfg)}, indent=2))
