"""Tokenizer files: load, copy, special-token ids, and the specials a model wraps its inputs with.

A tokenizer folder is a Hugging Face tokenizer directory (``tokenizer.json`` plus
``tokenizer_config.json`` / ``special_tokens_map.json``, and ``vocab.txt`` etc. for tokenizers
that came from elsewhere). Special-token ids are read once, by :func:`special_ids`, as a dict
``{pad, unk, bos, eos, mask, cls, sep} -> id | None``; :class:`Specials` is the view a task
model needs (what to wrap an example with, what to pad with).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from lmforge.errors import LmforgeError
from lmforge.tokenizer.config import TokenizerConfig

# the files that make up a tokenizer folder; copies take these and nothing else
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                   "merges.txt", "added_tokens.json", "tokenizer.model", "lmforge_tokenizer.json")


class TokenizerError(LmforgeError, ValueError):
    """A tokenizer file or folder that is missing or cannot be loaded."""

    pass


def load(path: str | Path):
    """A ``tokenizers.Tokenizer`` from a tokenizer.json file or an HF tokenizer directory."""
    from tokenizers import Tokenizer

    p = Path(path)
    file = p / "tokenizer.json" if p.is_dir() else p
    if not file.is_file():
        raise TokenizerError(f"tokenizer.path: no tokenizer.json at {p} (give an HF tokenizer folder or a tokenizer.json file)")
    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:
        raise TokenizerError(f"tokenizer.path: cannot load {file}: {exc}") from None


def special_ids(tok, folder: Path | None, cfg: TokenizerConfig) -> dict[str, int | None]:
    """Ids of the special tokens, from our config names or the HF folder's special_tokens_map."""
    names = asdict(cfg.special_tokens)
    hf_map = {}
    if folder is not None:
        for fname in ("special_tokens_map.json", "tokenizer_config.json"):
            f = folder / fname
            if f.is_file():
                try:
                    data = json.loads(f.read_text())
                except json.JSONDecodeError:
                    continue
                for k in names:
                    v = data.get(f"{k}_token")
                    if isinstance(v, dict):
                        v = v.get("content")
                    if isinstance(v, str) and k not in hf_map:
                        hf_map[k] = v
    out: dict[str, int | None] = {}
    for k, name in names.items():
        tid = tok.token_to_id(hf_map.get(k, name))
        if tid is None:
            tid = tok.token_to_id(name)
        out[k] = tid
    return out


def copy_files(src: str | Path, dst: Path) -> None:
    """Copy a tokenizer (a folder's tokenizer files, or one ``tokenizer.json``) into ``dst``."""
    src = Path(src)
    dst.mkdir(parents=True, exist_ok=True)
    if src.is_file():
        shutil.copy2(src, dst / "tokenizer.json")
        return
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


@dataclass
class Specials:
    """The special ids a task model wraps examples with: encoders ``[CLS] x [SEP]``, decoders
    ``x [EOS]``; ``pad`` fills batches."""

    pad: int
    cls: Optional[int] = None
    sep: Optional[int] = None
    eos: Optional[int] = None

    @classmethod
    def from_ids(cls, ids: dict[str, Optional[int]]) -> "Specials":
        pad, eos = ids.get("pad"), ids.get("eos")
        if pad is None:  # GPT-2 style vocabularies: pad with EOS, and do not append it (it would look like padding)
            pad, eos = (eos if eos is not None else 0), None
        return cls(pad=pad, cls=ids.get("cls"), sep=ids.get("sep"), eos=eos)

    def wrap(self, ids: list[int], causal: bool) -> tuple[list[int], int]:
        """Add the specials; returns (ids, number of leading specials)."""
        if causal:
            return ids + ([self.eos] if self.eos is not None else []), 0
        head = [self.cls] if self.cls is not None else []
        return head + ids + ([self.sep] if self.sep is not None else []), len(head)

    def count(self, causal: bool) -> int:
        if causal:
            return int(self.eos is not None)
        return int(self.cls is not None) + int(self.sep is not None)


def load_folder(folder: Path):
    """``(tokenizer, special ids)`` of a tokenizer folder or file; padding and truncation off (the
    callers do both themselves)."""
    tok = load(folder)
    tok.no_padding()
    tok.no_truncation()
    return tok, special_ids(tok, folder if Path(folder).is_dir() else None, TokenizerConfig())


def load_for_model(folder: Path):
    """``(tokenizer, Specials)`` for a task model's inputs."""
    tok, ids = load_folder(folder)
    return tok, Specials.from_ids(ids)


def add_post_processor(path: Path, specials: Specials, causal: bool) -> None:
    """Make a saved ``tokenizer.json`` add the specials the model was trained with, so HF pipelines
    see the same ids as we do (tokenizers that already have a template are kept)."""
    from tokenizers import Tokenizer
    from tokenizers.processors import Sequence, TemplateProcessing

    if not path.is_file():
        return
    tok = Tokenizer.from_file(str(path))
    existing = tok.post_processor
    if existing is not None and existing.num_special_tokens_to_add(False) > 0:
        return  # e.g. BERT's [CLS] $A [SEP] template
    ids = [specials.eos] if causal else [specials.cls, specials.sep]
    if any(i is None for i in ids):
        return
    names = [tok.id_to_token(i) for i in ids]
    single = f"$A {names[0]}" if causal else f"{names[0]} $A {names[1]}"
    template = TemplateProcessing(single=single, special_tokens=list(zip(names, ids)))
    tok.post_processor = template if existing is None else Sequence([existing, template])  # keep e.g. ByteLevel offsets
    tok.save(str(path))
    # transformers 5 rebuilds the template of a generic fast tokenizer from add_bos/eos_token
    # flags, so state it there too: encoders wrap with cls/sep, decoders append eos
    conf = path.parent / "tokenizer_config.json"
    if conf.is_file():
        tc = json.loads(conf.read_text())
        if causal:
            tc.update(add_bos_token=False, add_eos_token=True, eos_token=names[0])
        else:
            tc.update(add_bos_token=True, add_eos_token=True, bos_token=names[0], eos_token=names[1])
        conf.write_text(json.dumps(tc, indent=2))
