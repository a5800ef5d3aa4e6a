"""The token shard format written by ``lmforge data prepare`` and its torch readers.

Layout under ``<run>/data/tokens/``::

    index.json                 format, kind, dtype, seq_len, special ids, tokenizer_dir (relative
                               to this folder), per-split shard list
    <split>/shard_00000.bin    packed (unlabeled) data: raw little-endian ``dtype`` of
                               shape (windows, seq_len); documents joined with EOS, or
                               (framing cls_sep) each window = CLS + stream, documents
                               ended with SEP
    <split>/tokens.bin         labeled data: all examples' tokens, flat
    <split>/offsets.npy        labeled data: int64 (n+1,), example i = tokens[off[i]:off[i+1]]
    <split>/labels.npy         labeled data: int64 (n,), index into index.json "labels"

``dtype`` is uint16 when the vocabulary has at most 65,536 entries, else uint32. Every
shard of a split except the last holds the same number of windows, so window ``i`` is found
in O(1) without scanning.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from lmforge.errors import ArtifactError, DataError
from lmforge.containment import within

FORMAT = "lmforge-tokens-v1"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


class PackedWriter:
    """Streams token arrays in and writes full ``seq_len`` windows into fixed-size shards. With
    ``row_start`` every window is that id followed by ``seq_len - 1`` tokens of the stream (an
    encoder's ``<cls>`` at position 0, where fine-tuning puts it)."""

    def __init__(self, out_dir: Path, seq_len: int, dtype: np.dtype, shard_tokens: int, row_start: int | None = None):
        self.out_dir = out_dir
        self.seq_len = seq_len
        self.row_start = row_start
        self.body = seq_len - (row_start is not None)  # stream tokens per window
        self.dtype = dtype
        self.windows_per_shard = max(1, shard_tokens // seq_len)
        self.shards: list[dict] = []
        self._carry = np.zeros(0, dtype=dtype)
        self._fh = None
        self._in_shard = 0
        self.tokens_in = 0
        out_dir.mkdir(parents=True, exist_ok=True)

    def _open(self) -> None:
        name = f"shard_{len(self.shards):05d}.bin"
        self.shards.append({"file": f"{self.out_dir.name}/{name}", "windows": 0})
        self._fh = open(self.out_dir / name, "wb")
        self._in_shard = 0

    def write(self, tokens: np.ndarray) -> None:
        self.tokens_in += len(tokens)
        buf = np.concatenate([self._carry, tokens.astype(self.dtype, copy=False)])
        n_windows = len(buf) // self.body
        pos = 0
        while n_windows > 0:
            if self._fh is None or self._in_shard == self.windows_per_shard:
                self._close_shard()
                self._open()
            take = min(n_windows, self.windows_per_shard - self._in_shard)
            rows = buf[pos:pos + take * self.body]
            if self.row_start is not None:
                rows = np.concatenate([np.full((take, 1), self.row_start, self.dtype), rows.reshape(take, self.body)], 1)
            self._fh.write(rows.tobytes())
            self._in_shard += take
            self.shards[-1]["windows"] += take
            pos += take * self.body
            n_windows -= take
        self._carry = buf[pos:].copy()

    def _close_shard(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def close(self) -> dict:
        self._close_shard()
        windows = sum(s["windows"] for s in self.shards)
        return {"shards": self.shards, "windows": windows, "tokens": windows * self.seq_len,
                "tokens_in": self.tokens_in, "dropped_tail_tokens": int(len(self._carry)),
                "windows_per_shard": self.windows_per_shard}


def write_index(tokens_dir: Path, index: dict) -> None:
    tmp = tokens_dir / "index.json.tmp"
    tmp.write_text(json.dumps(index, indent=2))
    os.replace(tmp, tokens_dir / "index.json")


def read_index(tokens_dir: Path) -> dict:
    path = Path(tokens_dir) / "index.json"
    if not path.is_file():
        raise ArtifactError(f"no token index at {path}; run `lmforge data prepare` first")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise DataError(f"{path}: unknown format {index.get('format')!r}, expected {FORMAT}")
    return index


class PackedDataset:
    """Fixed-length windows of a split as ``torch.LongTensor`` of shape (seq_len,), O(1) access."""

    def __init__(self, tokens_dir: str | Path, split: str = "train"):
        import torch  # noqa: F401

        self.dir = Path(tokens_dir)
        self.index = read_index(self.dir)
        if self.index["kind"] != "packed":
            raise DataError(f"{self.dir} holds {self.index['kind']} data, not packed LM windows")
        if split not in self.index["splits"]:
            raise DataError(f"split {split!r} not in {sorted(self.index['splits'])}")
        info = self.index["splits"][split]
        self.seq_len = self.index["seq_len"]
        self.per_shard = info["windows_per_shard"]
        dtype = np.dtype(self.index["dtype"])
        self.maps = [np.memmap(within(self.dir, self.dir / s["file"], f"{self.dir / 'index.json'}: shard"), dtype=dtype,
                               mode="r").reshape(-1, self.seq_len)
                     if s["windows"] else np.zeros((0, self.seq_len), dtype) for s in info["shards"]]
        self.n = info["windows"]

    def __len__(self) -> int:
        return self.n

    def window(self, i: int) -> np.ndarray:
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"window {i} out of range for {self.n} windows")
        return self.maps[i // self.per_shard][i % self.per_shard]

    def __getitem__(self, i: int):
        import torch

        return torch.from_numpy(self.window(i).astype(np.int64))


class LabeledDataset:
    """One example per record: ``(input_ids LongTensor, label int)``, O(1) access."""

    def __init__(self, tokens_dir: str | Path, split: str = "train"):
        self.dir = Path(tokens_dir)
        self.index = read_index(self.dir)
        if self.index["kind"] != "labeled":
            raise DataError(f"{self.dir} holds {self.index['kind']} data, not labeled examples")
        info = self.index["splits"][split]
        self.labels_names = self.index["labels"]
        d = self.dir / split
        dtype = np.dtype(self.index["dtype"])
        self.tokens = np.memmap(d / "tokens.bin", dtype=dtype, mode="r") if info["tokens"] else np.zeros(0, dtype)
        self.offsets = np.load(d / "offsets.npy", mmap_mode="r")
        self.labels = np.load(d / "labels.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        import torch

        ids = np.asarray(self.tokens[self.offsets[i]:self.offsets[i + 1]], dtype=np.int64)
        return torch.from_numpy(ids), int(self.labels[i])
