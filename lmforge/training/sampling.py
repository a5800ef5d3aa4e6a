"""Deterministic, position-addressable batch orders: packed windows (pretraining) and labeled
examples (fine-tuning).

Pretraining (:class:`BatchPlan`).

The sample order is a seeded permutation of the windows per epoch. Optimizer step ``s``
consumes the global sample range ``[s*G, (s+1)*G)`` with ``G = world * accum * micro``;
micro-batch ``a`` of rank ``r`` takes ``micro`` samples at offset ``(a*world + r)*micro``.
So the loader's whole state is the step number: resume is O(1), and 1 process with
``accum = k`` sees exactly the samples that k processes with ``accum = 1`` see together.

Fine-tuning (:func:`epoch_batches`): each epoch is a seeded permutation; with bucketing, windows
of 50 batches are sorted by length before being cut, and the batch order is shuffled again — so
batches hold similar lengths (little padding) but the order stays random. The order is a pure
function of (seed, epoch), which makes resume exact without saving sampler state.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from lmforge.data.shards import PackedDataset
from lmforge.errors import DataError


class BatchPlan:
    """The windows of every (step, micro-batch, rank), as a pure function of the step (see the module docstring)."""

    def __init__(self, ds: PackedDataset, micro: int, accum: int, world: int, rank: int, seed: int):
        self.ds, self.micro, self.accum, self.world, self.rank, self.seed = ds, micro, accum, world, rank, seed
        self.n = len(ds)
        if self.n == 0:
            raise DataError("the train split has no windows: prepare more data or lower data.pack.seq_len")

    @property
    def global_batch(self) -> int:
        return self.world * self.accum * self.micro

    @lru_cache(maxsize=2)
    def _perm(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def indices(self, step: int, micro_index: int) -> np.ndarray:
        start = step * self.global_batch + (micro_index * self.world + self.rank) * self.micro
        g = np.arange(start, start + self.micro)
        epochs, pos = g // self.n, g % self.n
        return np.array([self._perm(int(e))[p] for e, p in zip(epochs, pos)])

    def batch(self, step: int, micro_index: int) -> torch.Tensor:
        idx = self.indices(step, micro_index)
        return torch.from_numpy(np.stack([self.ds.window(int(i)) for i in idx]).astype(np.int64))  # (B, T)

    def epoch_of(self, step: int) -> float:
        return step * self.global_batch / self.n


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, bucket: bool) -> list[np.ndarray]:
    """Index arrays of one epoch's batches (the last may be smaller)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if bucket:
        window = batch_size * 50
        order = np.concatenate([chunk[np.argsort(lengths[chunk], kind="stable")]
                                for chunk in np.array_split(order, max(1, -(-len(order) // window)))]) \
            if len(order) else order
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if bucket:
        perm = rng.permutation(len(batches))
        batches = [batches[i] for i in perm]
    return batches
