"""Deterministic, position-addressable batches for pretraining.

The sample order is a seeded permutation of the windows per epoch. Optimizer step ``s``
consumes the global sample range ``[s*G, (s+1)*G)`` with ``G = world * accum * micro``;
micro-batch ``a`` of rank ``r`` takes ``micro`` samples at offset ``(a*world + r)*micro``.
So the loader's whole state is the step number: resume is O(1), and 1 process with
``accum = k`` sees exactly the samples that k processes with ``accum = 1`` see together.
MLM masks come from a generator seeded by (seed, step, micro-batch, rank): no RNG state.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from lmforge.data.shards import PackedDataset
from lmforge.errors import DataError


class BatchPlan:
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


def mask_tokens(ids: torch.Tensor, mask_id: int, vocab_size: int, special_ids: list[int], prob: float,
                seed: int, step: int, micro_index: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: ``prob`` of non-special tokens are targets; of those 80% → [MASK],
    10% → a random token, 10% unchanged. Returns (inputs, labels with -100 elsewhere)."""
    g = torch.Generator().manual_seed(hash((seed, step, micro_index, rank)) & ((1 << 62) - 1))
    labels = ids.clone()
    can = torch.ones_like(ids, dtype=torch.bool)
    for s in special_ids:
        can &= ids != s
    target = (torch.rand(ids.shape, generator=g) < prob) & can
    labels[~target] = -100
    inputs = ids.clone()
    r = torch.rand(ids.shape, generator=g)
    inputs[target & (r < 0.8)] = mask_id
    rand_pos = target & (r >= 0.8) & (r < 0.9)
    inputs[rand_pos] = torch.randint(0, vocab_size, ids.shape, generator=g)[rand_pos]
    return inputs, labels
