"""Stage 4: tokenize each unit's split files (in parallel), then pack into shards.

Per unit and split, :func:`tokenize_unit` writes ``work/tokens/<split>/unit_NNNNN.bin``
(flat token ids; for unlabeled data each document followed by its end token — EOS, or SEP
when windows are framed ``cls_sep`` — optionally preceded by BOS) and, for labeled data,
``unit_NNNNN.npz`` with per-example lengths and labels.
:func:`merge` then streams those files in unit order into the shard format of
:mod:`lmforge.data.shards` (with ``cls_sep`` framing each window is CLS + seq_len - 1 tokens of
the stream), so the result does not depend on the number of workers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmforge import faults
from lmforge.data.config import PackConfig
from lmforge.data.shards import FORMAT, PackedWriter, token_dtype, write_index
from lmforge.data.sources import WorkUnit
from lmforge.data.split import SPLITS

BATCH = 1024
TOKEN_BINS = [0, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 1 << 40]  # token-length histogram edges


@dataclass
class PackContext:
    tokenizer_file: Path
    split_dir: Path
    work_dir: Path
    labeled: bool
    bos_id: int | None
    eos_id: int
    vocab_size: int
    pack: PackConfig
    row_start_id: int | None = None  # framing cls_sep: the id every packed window starts with


def _read_texts(path: Path):
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            yield d["text"], d.get("label")


def tokenize_unit(unit: WorkUnit, ctx: PackContext) -> dict:
    os.environ.setdefault("RAYON_NUM_THREADS", "1")  # one process per core already
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(ctx.tokenizer_file))
    # a loaded HF tokenizer may pad or truncate on its own (all-MiniLM-L6-v2's pads to 128): packing
    # wants each document's own tokens, whole (labeled examples are cut at pack.max_length below)
    tok.no_padding()
    tok.no_truncation()
    dtype = token_dtype(ctx.vocab_size)
    out = {}
    for split in SPLITS:
        src = ctx.split_dir / split / f"{unit.name}.jsonl"
        dst_dir = ctx.work_dir / split
        dst_dir.mkdir(parents=True, exist_ok=True)
        n_docs = n_tokens = truncated = 0
        lengths, labels = [], []
        with open(dst_dir / f"{unit.name}.bin", "wb") as fh:
            batch: list[str] = []
            batch_labels: list = []

            def flush() -> None:
                nonlocal n_docs, n_tokens, truncated
                if not batch:
                    return
                # Encoding.ids builds a new Python list on every access: read each one once
                docs = [e.ids for e in tok.encode_batch_fast(batch, add_special_tokens=False)]
                if ctx.labeled:
                    parts = [np.array(ids[: ctx.pack.max_length], dtype=dtype) for ids in docs]
                    truncated += sum(len(ids) > ctx.pack.max_length for ids in docs)
                    labels.extend(batch_labels)
                    lengths.extend(len(x) for x in parts)
                else:
                    bos = np.array([ctx.bos_id], dtype=dtype) if ctx.pack.add_bos and ctx.bos_id is not None else None
                    eos = np.array([ctx.eos_id], dtype=dtype)
                    parts = []
                    for ids in docs:  # one small array per document is the cheapest flattening here
                        if bos is not None:
                            parts.append(bos)
                        parts.append(np.array(ids, dtype=dtype))
                        parts.append(eos)
                    lengths.extend(len(ids) + 1 + (bos is not None) for ids in docs)
                flat = np.concatenate(parts) if parts else np.zeros(0, dtype)
                fh.write(flat.tobytes())
                n_docs += len(batch)
                n_tokens += len(flat)
                batch.clear()
                batch_labels.clear()

            if src.exists():
                for text, label in _read_texts(src):
                    batch.append(text)
                    batch_labels.append(label)
                    if len(batch) >= BATCH:
                        flush()
                flush()
        if ctx.labeled:
            np.savez(dst_dir / f"{unit.name}.npz", lengths=np.array(lengths, dtype=np.int64),
                     labels=np.array([lb if lb is not None else "" for lb in labels], dtype=str))
        out[split] = {"docs": n_docs, "tokens": n_tokens, "truncated": truncated,
                      "length_hist": np.histogram(lengths, bins=TOKEN_BINS)[0].tolist() if lengths else [0] * (len(TOKEN_BINS) - 1)}
    return out



def merge(units: list[WorkUnit], ctx: PackContext, tokens_dir: Path, label_names: list[str] | None,
          special: dict, tokenizer_dir: str | None = None) -> dict:
    """Write the final shards and ``index.json``; returns the index."""
    dtype = token_dtype(ctx.vocab_size)
    index = {"format": FORMAT, "kind": "labeled" if ctx.labeled else "packed", "dtype": dtype.name,
             "vocab_size": ctx.vocab_size, "special_ids": special, "tokenizer_dir": tokenizer_dir, "splits": {}}
    if ctx.labeled:
        index["labels"] = label_names
        index["max_length"] = ctx.pack.max_length
        lid = {name: i for i, name in enumerate(label_names or [])}
    else:
        index["seq_len"] = ctx.pack.seq_len
        index["row_start_id"] = ctx.row_start_id
        index["doc_end_id"] = ctx.eos_id
    for split in SPLITS:
        if ctx.labeled:
            d = tokens_dir / split
            d.mkdir(parents=True, exist_ok=True)
            lengths, labels = [], []
            with open(d / "tokens.bin", "wb") as fh:
                for u in units:
                    with open(ctx.work_dir / split / f"{u.name}.bin", "rb") as src:
                        while chunk := src.read(16 << 20):
                            fh.write(chunk)
                    z = np.load(ctx.work_dir / split / f"{u.name}.npz")
                    lengths.append(z["lengths"])
                    labels.append(np.array([lid[x] for x in z["labels"]], dtype=np.int64))
            lengths_a = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
            offsets = np.concatenate(([0], np.cumsum(lengths_a))).astype(np.int64)
            np.save(d / "offsets.npy", offsets)
            np.save(d / "labels.npy", np.concatenate(labels) if labels else np.zeros(0, np.int64))
            index["splits"][split] = {"examples": int(len(lengths_a)), "tokens": int(offsets[-1]),
                                      "files": [f"{split}/tokens.bin", f"{split}/offsets.npy", f"{split}/labels.npy"]}
        else:
            writer = PackedWriter(tokens_dir / split, ctx.pack.seq_len, dtype, ctx.pack.shard_tokens,
                                  row_start=ctx.row_start_id)
            for u in units:
                path = ctx.work_dir / split / f"{u.name}.bin"
                writer.write(np.fromfile(path, dtype=dtype))
            index["splits"][split] = writer.close()
        faults.point("merge.split")
    write_index(tokens_dir, index)
    return index
