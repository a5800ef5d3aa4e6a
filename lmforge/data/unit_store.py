"""Corpus-wide views of the per-unit arrays written by ingest, without loading the corpus.

Documents are numbered globally in unit order. Columns are concatenated on demand; big 2-D
arrays (signatures, band keys) are memory-mapped and read one column or a few rows at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class UnitStore:
    def __init__(self, work_dir: Path, unit_names: list[str], counts: list[int]):
        self.work_dir = work_dir
        self.names = unit_names
        self.counts = np.asarray(counts, dtype=np.int64)
        self.offsets = np.concatenate(([0], np.cumsum(self.counts)))
        self.n = int(self.offsets[-1])

    def path(self, i: int, suffix: str) -> Path:
        return self.work_dir / f"{self.names[i]}.{suffix}"

    def field(self, name: str) -> np.ndarray:
        """One field of ``fp.npz`` for every document."""
        parts = []
        for i in range(len(self.names)):
            with np.load(self.path(i, "fp.npz")) as z:
                parts.append(z[name])
        return np.concatenate(parts) if parts else np.zeros(0)

    def _by_unit(self, idx: np.ndarray):
        """For global document numbers ``idx``: (unit, positions in idx, local numbers) per unit."""
        idx = np.asarray(idx, dtype=np.int64)
        unit = np.searchsorted(self.offsets, idx, side="right") - 1
        for u in np.unique(unit):
            sel = np.flatnonzero(unit == u)
            yield int(u), sel, idx[sel] - self.offsets[u]

    def gather(self, name: str, idx: np.ndarray) -> np.ndarray:
        """Field ``name`` of ``fp.npz`` for documents ``idx`` only (reads just the units involved)."""
        out = np.empty(len(idx), dtype=object)
        for u, sel, local in self._by_unit(idx):
            with np.load(self.path(u, "fp.npz")) as z:
                out[sel] = z[name][local]
        return out

    def column(self, kind: str, j: int) -> np.ndarray:
        """Column ``j`` of ``<kind>.npy`` (e.g. band key j) for every document."""
        parts = [np.load(self.path(i, f"{kind}.npy"), mmap_mode="r")[:, j] for i in range(len(self.names))
                 if self.counts[i]]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)

    def rows(self, kind: str, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (global document numbers) of ``<kind>.npy``, in the order given."""
        out = None
        for u, sel, local in self._by_unit(idx):
            block = np.load(self.path(u, f"{kind}.npy"), mmap_mode="r")[local]
            if out is None:
                out = np.empty((len(idx),) + block.shape[1:], dtype=block.dtype)
            out[sel] = block
        return out if out is not None else np.zeros((0,), dtype=np.uint32)

    def texts(self, idx: np.ndarray) -> list[str]:
        """Texts of documents ``idx`` (global numbers), read by byte offset from the units' docs.jsonl."""
        import json

        out: list[str] = [""] * len(idx)
        for u, sel, local in self._by_unit(idx):
            with np.load(self.path(u, "fp.npz")) as z:
                offs = z["offset"][local]
            order = np.argsort(offs)
            with open(self.path(u, "docs.jsonl"), "rb") as fh:
                for k in order:
                    fh.seek(int(offs[k]))
                    out[sel[k]] = json.loads(fh.readline())["text"]
        return out

    def split_by_unit(self, arr: np.ndarray) -> list[np.ndarray]:
        return [arr[self.offsets[i]:self.offsets[i + 1]] for i in range(len(self.names))]
