"""Shard writer/readers: windows, dtype choice, O(1) access, labeled examples."""

import numpy as np
import pytest
import torch

from lmforge.data.shards import FORMAT, PackedDataset, PackedWriter, token_dtype, write_index


def test_dtype_choice():
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32


@pytest.mark.parametrize("vocab", [1000, 100_000])
def test_packed_roundtrip_across_shards(tmp_path, vocab):
    dtype = token_dtype(vocab)
    w = PackedWriter(tmp_path / "train", seq_len=8, dtype=dtype, shard_tokens=8 * 3)
    stream = np.arange(100, dtype=np.int64) % vocab + (vocab - 200 if vocab > 65536 else 0)
    for chunk in np.array_split(stream, 7):
        w.write(chunk)
    info = w.close()
    assert info["windows"] == 12 and info["dropped_tail_tokens"] == 4
    assert [s["windows"] for s in info["shards"]] == [3, 3, 3, 3]
    write_index(tmp_path, {"format": FORMAT, "kind": "packed", "dtype": dtype.name, "seq_len": 8,
                           "splits": {"train": info}})
    ds = PackedDataset(tmp_path, "train")
    assert len(ds) == 12
    for i in range(12):
        x = ds[i]
        assert x.dtype == torch.int64 and x.shape == (8,)
        assert torch.equal(x, torch.from_numpy(stream[i * 8:(i + 1) * 8]))
    assert torch.equal(ds[-1], ds[11])
    with pytest.raises(IndexError):
        ds[12]
