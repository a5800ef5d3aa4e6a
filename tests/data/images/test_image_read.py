"""Image readers on hostile input: truncated and mislabeled IDX, corrupt files in class folders,
mixed shapes, array layouts and dtypes, the built-in digits."""

import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from lmforge.data.images.config import ImageConfig, ImageSourceConfig
from lmforge.data.images.read import ImageRecord, Rejected, read_source
from lmforge.errors import DataError


def write_idx(path, arr: np.ndarray, magic: int, gz: bool = False) -> None:
    data = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def split(items):
    recs = [r for r in items if isinstance(r, ImageRecord)]
    rej = [r for r in items if isinstance(r, Rejected)]
    return recs, rej


def images(n=5, h=4, w=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w), dtype=np.uint8)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    x, y = images(), np.array([3, 1, 4, 1, 5], np.uint8)
    ext = ".gz" if gz else ""
    write_idx(tmp_path / f"i-ubyte{ext}", x, 0x803, gz)
    write_idx(tmp_path / f"l-ubyte{ext}", y, 0x801, gz)
    src = ImageSourceConfig(path=str(tmp_path / f"i-ubyte{ext}"), labels=str(tmp_path / f"l-ubyte{ext}"))
    recs, rej = split(list(read_source(src, ImageConfig())))
    assert not rej and len(recs) == 5
    assert all(np.array_equal(r.pixels, x[i][None]) for i, r in enumerate(recs))
    assert [r.label for r in recs] == ["3", "1", "4", "1", "5"]
    assert recs[2].id.endswith(":2")
    names = [f"c{i}" for i in range(6)]
    src.label_names = names
    assert [r.label for r in read_source(src, ImageConfig())] == ["c3", "c1", "c4", "c1", "c5"]


def test_truncated_idx_keeps_complete_images(tmp_path):
    x = images(n=5, h=4, w=4)
    write_idx(tmp_path / "i-ubyte", x, 0x803)
    write_idx(tmp_path / "l-ubyte", np.arange(5), 0x801)
    raw = (tmp_path / "i-ubyte").read_bytes()
    (tmp_path / "i-ubyte").write_bytes(raw[:16 + 2 * 16 + 5])  # two whole images, 5 bytes of the third
    src = ImageSourceConfig(path=str(tmp_path / "i-ubyte"), labels=str(tmp_path / "l-ubyte"))
    recs, rej = split(list(read_source(src, ImageConfig())))
    assert len(recs) == 2 and np.array_equal(recs[1].pixels[0], x[1])
    assert [r.reason for r in rej] == ["truncated_idx"] * 3
    assert "11 of its 16 bytes missing" in rej[0].detail and "16 of its 16" in rej[1].detail
    assert "43 bytes short" in rej[0].detail


def test_truncated_gzip_idx(tmp_path):
    x = images(n=200, h=8, w=8, seed=1)
    write_idx(tmp_path / "i.gz", x, 0x803, gz=True)
    raw = (tmp_path / "i.gz").read_bytes()
    (tmp_path / "i.gz").write_bytes(raw[:len(raw) // 2])
    recs, rej = split(list(read_source(ImageSourceConfig(path=str(tmp_path / "i.gz")), ImageConfig())))
    assert 0 < len(recs) < 200 and len(recs) + len(rej) == 200
    assert all(np.array_equal(r.pixels[0], x[i]) for i, r in enumerate(recs))
    assert {r.reason for r in rej} == {"truncated_idx"} and "gzip stream ends early" in rej[0].detail


def test_wrong_magic_names_file_and_numbers(tmp_path):
    write_idx(tmp_path / "i-ubyte", images(), 0x801)  # labels magic on an image file
    write_idx(tmp_path / "l-ubyte", np.arange(5), 0x801)
    with pytest.raises(DataError, match=r"i-ubyte.*0x00000801.*expected 0x00000803.*swapped"):
        list(read_source(ImageSourceConfig(path=str(tmp_path / "i-ubyte"), labels=str(tmp_path / "l-ubyte")), ImageConfig()))
    (tmp_path / "bad-ubyte").write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="too short"):
        list(read_source(ImageSourceConfig(path=str(tmp_path / "bad-ubyte")), ImageConfig()))


@pytest.mark.parametrize("n_labels,reason", [(3, "no_label"), (7, "no_image")])
def test_label_count_mismatch(tmp_path, n_labels, reason):
    write_idx(tmp_path / "i-ubyte", images(), 0x803)
    write_idx(tmp_path / "l-ubyte", np.arange(n_labels), 0x801)
    src = ImageSourceConfig(path=str(tmp_path / "i-ubyte"), labels=str(tmp_path / "l-ubyte"))
    recs, rej = split(list(read_source(src, ImageConfig())))
    assert len(recs) == min(5, n_labels) and [r.reason for r in rej] == [reason, reason]


def _png(path, size=(6, 5), color=(10, 200, 30), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_folder_hostile_files(tmp_path):
    _png(tmp_path / "cat" / "a.png")
    _png(tmp_path / "cat" / "b.jpg")
    (tmp_path / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (tmp_path / "cat" / "garbage.jpg").write_bytes(b"\x00" * 40)
    (tmp_path / "cat" / "notes.txt").write_text("hello")
    _png(tmp_path / "dog" / "big.bmp", size=(9, 9))
    _png(tmp_path / "dog" / "c.gif", color=3, mode="P")
    _png(tmp_path / "stray.png")
    items = list(read_source(ImageSourceConfig(path=str(tmp_path)), ImageConfig()))
    recs, rej = split(items)
    assert [(r.label, r.pixels.shape) for r in recs] == [("cat", (3, 5, 6)), ("cat", (3, 5, 6)), ("dog", (3, 5, 6))]
    reasons = {r.id.rsplit("/", 1)[-1]: r for r in rej}
    assert reasons["broken.png"].reason == "unreadable_image" and "Truncated" in reasons["broken.png"].detail
    assert reasons["garbage.jpg"].reason == "unreadable_image" and "cannot identify" in reasons["garbage.jpg"].detail
    assert reasons["notes.txt"].reason == "not_an_image"
    assert reasons["big.bmp"].reason == "wrong_shape" and "9x9" in reasons["big.bmp"].detail and "5x6" in reasons["big.bmp"].detail
    assert reasons["stray.png"].reason == "no_label"
    assert np.array_equal(recs[0].pixels[:, 0, 0], [10, 200, 30])


def test_folder_resize_and_channels(tmp_path):
    _png(tmp_path / "a" / "x.png", size=(6, 5))
    _png(tmp_path / "b" / "y.png", size=(12, 3))
    _png(tmp_path / "b" / "z.png", size=(4, 4), color=128, mode="L")
    cfg = ImageConfig(size=[7, 8], channels=1)
    recs, rej = split(list(read_source(ImageSourceConfig(path=str(tmp_path)), cfg)))
    assert not rej and [r.pixels.shape for r in recs] == [(1, 7, 8)] * 3
    assert recs[0].pixels.dtype == np.uint8 and recs[2].pixels.max() == 128
    capped = list(read_source(ImageSourceConfig(path=str(tmp_path)), ImageConfig(size=[4, 4], max_images=2)))
    assert sorted(r.label for r in capped) == ["a", "b"]  # the cap takes every class in turn


@pytest.mark.parametrize("layout", ["nhw", "nhwc", "nchw"])
def test_npz_round_trip(tmp_path, layout):
    x = np.random.default_rng(2).integers(0, 256, (6, 3, 5, 7), dtype=np.uint8)  # (N, C, H, W)
    arr = {"nhw": x[:, 0], "nhwc": x.transpose(0, 2, 3, 1), "nchw": x}[layout]
    np.savez(tmp_path / "d.npz", images=arr, labels=np.array([0, 1, 2, 0, 1, 2]))
    src = ImageSourceConfig(path=str(tmp_path / "d.npz"), label_names=["x", "y", "z"])
    recs, rej = split(list(read_source(src, ImageConfig())))
    want = x[:, :1] if layout == "nhw" else x
    assert not rej and all(np.array_equal(r.pixels, want[i]) for i, r in enumerate(recs))
    assert [r.label for r in recs] == ["x", "y", "z"] * 2


def test_npz_dtypes_and_unnamed_labels(tmp_path):
    f = np.random.default_rng(3).random((4, 5, 5))
    np.savez(tmp_path / "f.npz", images=f, labels=np.array([0, 1, 2, 9]))
    warnings = []
    recs, rej = split(list(read_source(ImageSourceConfig(path=str(tmp_path / "f.npz"), label_names=["a", "b", "c"]),
                                       ImageConfig(), warnings)))
    assert np.array_equal(recs[0].pixels[0], np.rint(f[0] * 255).astype(np.uint8)) and not warnings
    assert [r.reason for r in rej] == ["unknown_label"] and "label 9" in rej[0].detail
    np.savez(tmp_path / "i.npz", images=np.array([[[-5, 300], [7, 255]]], dtype=np.int16), labels=np.array([1]))
    recs, _ = split(list(read_source(ImageSourceConfig(path=str(tmp_path / "i.npz")), ImageConfig(), warnings)))
    assert recs[0].pixels.tolist() == [[[0, 255], [7, 255]]] and recs[0].label == "1"
    assert len(warnings) == 1 and "2 pixel value(s)" in warnings[0]


def test_npz_and_npy_errors(tmp_path):
    np.savez(tmp_path / "no.npz", pixels=np.zeros((2, 3, 3)))
    with pytest.raises(DataError, match="no array named 'images'.*pixels"):
        list(read_source(ImageSourceConfig(path=str(tmp_path / "no.npz")), ImageConfig()))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match="junk.npz: not a readable .npz"):
        list(read_source(ImageSourceConfig(path=str(tmp_path / "junk.npz")), ImageConfig()))
    np.save(tmp_path / "x.npy", np.zeros((3, 2, 2, 2, 2)))
    with pytest.raises(DataError, match="x.npy: images of shape"):
        list(read_source(ImageSourceConfig(path=str(tmp_path / "x.npy")), ImageConfig()))
    with pytest.raises(DataError, match="missing.npz: no such file"):
        list(read_source(ImageSourceConfig(path=str(tmp_path / "missing.npz")), ImageConfig()))


def test_npy_pair(tmp_path):
    x = images(n=4)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.array([1, 0, 1, 0]))
    src = ImageSourceConfig(path=str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy"), format="npy")
    recs = list(read_source(src, ImageConfig(max_images=3)))
    assert [r.label for r in recs] == ["1", "0", "1"] and np.array_equal(recs[2].pixels[0], x[2])


def test_digits_builtin():
    recs, rej = split(list(read_source(ImageSourceConfig(builtin="digits"), ImageConfig())))
    assert len(recs) == 1797 and not rej
    assert recs[0].pixels.shape == (1, 8, 8) and recs[0].pixels.dtype == np.uint8
    assert {r.label for r in recs} == {str(i) for i in range(10)}
    assert max(int(r.pixels.max()) for r in recs[:50]) == 255
