"""``prepare_images`` end to end on generated images with planted duplicates, and its pieces:
dedup, leak check, normalizer, store."""

import json

import numpy as np
import pytest
import torch

from lmforge.data.config import DataConfig, SplitConfig
from lmforge.data.images.config import ImageAugmentConfig, ImageConfig, ImageDedupConfig, ImageSourceConfig
from lmforge.data.images.dedup import content_hashes, cross_split_leaks, dhash, exact_duplicates, near_duplicates
from lmforge.data.images.normalize import Normalizer
from lmforge.data.images.prepare import label_order, prepare_images
from lmforge.data.images.store import load_manifest, load_split
from lmforge.errors import ArtifactError, DataError

NAMES = ["a", "b", "c"]


def make_set(tmp_path, n=240, dups=12, seed=0, h=6, w=6):
    """npz of ``n`` distinct images (each a random brightness plus noise) and ``dups`` exact copies
    of earlier ones appended; returns (path, images, labels, index of the original of each copy)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 200, (n, 1, 1)) + rng.integers(0, 56, (n, h, w))
    x = base.astype(np.uint8)
    y = np.arange(n) % 3
    orig = rng.choice(n, size=dups, replace=False)
    x, y = np.concatenate([x, x[orig]]), np.concatenate([y, y[orig]])
    path = tmp_path / "set.npz"
    np.savez(path, images=x, labels=y)
    return path, x, y, orig


def config(path, **kw) -> DataConfig:
    img = dict(sources=[ImageSourceConfig(path=str(path), label_names=NAMES)])
    img.update(kw.pop("image", {}))
    return DataConfig(kind="image", image=ImageConfig(**img), split=SplitConfig(**kw.pop("split", dict(val=0.2, test=0.2))), **kw)


def test_end_to_end(tmp_path):
    path, x, y, orig = make_set(tmp_path)
    aug = ImageAugmentConfig(enabled=True, rotation=10, hflip=0.5)
    m = prepare_images(config(path, image=dict(augment=aug)), seed=3, out=tmp_path / "out", progress=False)
    c = m["counts"]
    assert c["read"] == len(x) == c["kept"] + sum(c["rejected_by_reason"].values())
    assert c["rejected_by_reason"] == {"duplicate": len(orig)} and m["dedup"]["exact"]["removed"] == len(orig)
    rejected = [json.loads(line) for line in (tmp_path / "out" / "rejected" / "images.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rejected) == sorted(f"{path}:{240 + k}" for k in range(len(orig)))
    for r in rejected:  # each copy names its original, the one kept
        k = int(r["id"].rsplit(":", 1)[1]) - 240
        assert r["reason"] == "duplicate" and r["detail"].endswith(f"{path}:{orig[k]}")

    assert m["kind"] == "image" and m["shape"] == [1, 6, 6] and m["labels"] == NAMES
    assert sum(m["splits"].values()) == c["kept"]
    for lab in NAMES:  # stratified: each class split 60/20/20
        n = sum(m["class_counts"][s][lab] for s in m["splits"])
        assert m["class_counts"]["val"][lab] == round(0.2 * n) and m["class_counts"]["test"][lab] == round(0.2 * n)

    seen_ids, hashes = set(), []
    for split in ("train", "val", "test"):
        arr = load_split(tmp_path / "out", split)
        assert isinstance(arr.images, np.memmap) and arr.images.dtype == np.uint8 and arr.shape == (1, 6, 6)
        assert len(arr) == m["splits"][split] and arr.label_names == NAMES
        rows = [int(i.rsplit(":", 1)[1]) for i in arr.ids]
        assert np.array_equal(np.asarray(arr.images), x[rows][:, None]) and np.array_equal(arr.labels, y[rows])
        seen_ids |= set(arr.ids)
        hashes.append(content_hashes(np.asarray(arr.images)))
    assert len(seen_ids) == c["kept"]
    hashes = np.concatenate(hashes)
    assert len(np.unique(hashes)) == len(hashes)  # no duplicate left anywhere, so none across splits
    assert m["leaks"]["left"] == 0 and all(v["exact"] == 0 for v in m["leaks"]["found"].values())

    for f in ("manifest.json", "report.md", "samples.png", "augment_grid.png", "images/index.json"):
        assert (tmp_path / "out" / f).is_file(), f
    assert load_manifest(tmp_path / "out")["counts"] == c
    assert m["augment"]["rotation"] == 10 and m["sources"][0]["sha256"] and m["config"]["kind"] == "image"
    report = (tmp_path / "out" / "report.md").read_text()
    assert "duplicate" in report and "mean_std" in report


def test_normalizer_fit_on_train_only(tmp_path):
    path, x, y, _ = make_set(tmp_path, dups=0, seed=4)
    m = prepare_images(config(path), seed=1, out=tmp_path / "out", progress=False)
    train = np.asarray(load_split(tmp_path / "out", "train").images)
    every = np.concatenate([train] + [np.asarray(load_split(tmp_path / "out", s).images) for s in ("val", "test")])
    want_mean, want_std = train.astype(np.float64).mean() / 255, train.astype(np.float64).std() / 255
    all_mean, all_std = every.astype(np.float64).mean() / 255, every.astype(np.float64).std() / 255
    assert abs(want_mean - all_mean) > 1e-3 and abs(want_std - all_std) > 1e-4  # the test can tell them apart
    assert m["normalize"]["mean"][0] == pytest.approx(want_mean, abs=1e-12)
    assert m["normalize"]["std"][0] == pytest.approx(want_std, abs=1e-12)


def test_split_is_seeded(tmp_path):
    path, *_ = make_set(tmp_path, dups=0)

    def ids(seed, out):
        prepare_images(config(path), seed=seed, out=tmp_path / out, progress=False)
        return load_split(tmp_path / out, "val").ids

    assert ids(5, "a") == ids(5, "b") and ids(5, "a") != ids(6, "c")


def test_declared_labels_strict_and_shapes(tmp_path):
    path, x, y, _ = make_set(tmp_path, dups=0)
    m = prepare_images(config(path, labels=["c", "a"]), seed=0, out=tmp_path / "o1", progress=False)
    assert m["labels"] == ["c", "a"] and m["counts"]["rejected_by_reason"] == {"unknown_label": int((y == 1).sum())}
    with pytest.raises(DataError, match="unknown_label.*data.strict"):
        prepare_images(config(path, labels=["c", "a"], strict=True), seed=0, out=tmp_path / "o2", progress=False)
    np.savez(tmp_path / "small.npz", images=np.zeros((3, 5, 5), np.uint8) + np.arange(3)[:, None, None],
             labels=np.array([0, 1, 2]))
    cfg = config(path)
    cfg.image.sources.append(ImageSourceConfig(path=str(tmp_path / "small.npz"), label_names=NAMES))
    m = prepare_images(cfg, seed=0, out=tmp_path / "o3", progress=False)
    assert m["counts"]["rejected_by_reason"] == {"wrong_shape": 3}
    assert m["counts"]["read"] == len(x) + 3


@pytest.mark.parametrize("on_leak", ["fail", "move", "report"])
def test_leaks_across_splits(tmp_path, on_leak):
    # near copies (one pixel one level off) with perceptual dedup off: their content hashes differ,
    # so the split scatters them, and the leak check (dHash + pixels) must find them
    path, x, y, orig = make_set(tmp_path, n=150, dups=40)
    x[150:, 0, 0] ^= 1
    np.savez(path, images=x, labels=y)
    cfg = config(path, split=dict(val=0.3, test=0.3, on_leak=on_leak))
    if on_leak == "fail":
        with pytest.raises(DataError, match="on_leak=fail"):
            prepare_images(cfg, seed=0, out=tmp_path / "out", progress=False)
        return
    m = prepare_images(cfg, seed=0, out=tmp_path / "out", progress=False)
    found = sum(v["near"] for v in m["leaks"]["found"].values())
    assert found > 0 and m["counts"]["kept"] == len(x)
    splits = {s: np.asarray(load_split(tmp_path / "out", s).images) for s in ("train", "val", "test")}
    left = sum(v["near"] for v in cross_split_leaks(splits, max_diff=0.02).values())
    assert (left == 0 and m["leaks"]["left"] == 0 and m["leaks"]["moved_to_train"] > 0) if on_leak == "move" \
        else (left == found and m["leaks"]["left"] == found and m["leaks"]["moved_to_train"] == 0)


def test_source_pinned_to_a_split(tmp_path):
    path, x, y, _ = make_set(tmp_path, n=150, dups=0)
    off = x[:20].copy()
    off[:, 0, 0] ^= 1  # near copies of train images: leaks the split may not fix by moving them
    np.savez(tmp_path / "official_test.npz", images=off, labels=y[:20])
    cfg = config(path, split=dict(val=0.2, test=0.0, on_leak="move"))
    cfg.image.sources.append(ImageSourceConfig(path=str(tmp_path / "official_test.npz"), label_names=NAMES, split="test"))
    m = prepare_images(cfg, seed=0, out=tmp_path / "out", progress=False)
    test = load_split(tmp_path / "out", "test")
    assert sorted(test.ids) == sorted(f"{tmp_path / 'official_test.npz'}:{i}" for i in range(20))
    moved = m["leaks"]["moved_to_train"]  # val images near-copied in the pinned test set go to train
    assert m["splits"]["val"] + moved == 3 * round(0.2 * 50) and m["splits"]["train"] == 120 + moved
    found = m["leaks"]["found"]
    assert found["test-train"]["near"] + found["val-test"]["near"] == 20 and moved == found["val-test"]["near"]
    assert m["leaks"]["left"] == 20  # the pinned test images never move


def test_perceptual_dedup(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (60, 16, 16)).astype(np.uint8)
    near = x[:10].copy()
    near[:, 0, 0] ^= 1  # one pixel one level off: same dHash, nearly the same pixels
    np.savez(tmp_path / "n.npz", images=np.concatenate([x, near]), labels=np.arange(70) % 3)
    on = config(tmp_path / "n.npz", image=dict(dedup=ImageDedupConfig(perceptual=True)))
    m = prepare_images(on, seed=0, out=tmp_path / "on", progress=False)
    assert m["counts"]["rejected_by_reason"] == {"near_duplicate": 10} and m["dedup"]["perceptual"]["removed"] == 10
    m = prepare_images(config(tmp_path / "n.npz"), seed=0, out=tmp_path / "off", progress=False)
    assert m["counts"]["kept"] == 70


def test_exact_dedup_survives_hash_collisions_and_near_does_not_chain():
    x = np.stack([np.full((1, 4, 4), v, np.uint8) for v in (1, 2, 1, 3)])
    assert exact_duplicates(x).tolist() == [0, 1, 0, 3]
    assert exact_duplicates(x, np.zeros(4, np.uint64)).tolist() == [0, 1, 0, 3]  # every hash collides
    dh = np.array([0b000, 0b001, 0b011, 0b111], dtype=np.uint64)  # a chain, one bit per step
    rep, dist = near_duplicates(x, dh, max_hamming=1)
    assert rep.tolist() == [0, 0, 2, 2] and dist.tolist() == [0, 1, 0, 1]
    assert dhash(np.zeros((2, 3, 9, 9), np.uint8)).tolist() == [0, 0]


def test_normalizer_kinds_and_round_trip():
    x = np.random.default_rng(0).integers(0, 256, (50, 3, 5, 5), dtype=np.uint8)
    n = Normalizer("mean_std").fit(x)
    ref = x.astype(np.float64).transpose(1, 0, 2, 3).reshape(3, -1) / 255
    assert np.allclose(n.mean, ref.mean(1), atol=1e-12) and np.allclose(n.std, ref.std(1), atol=1e-12)
    out = n(torch.from_numpy(x))
    assert out.dtype == torch.float32 and torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(n(torch.from_numpy(x).float() / 255), out)
    again = Normalizer.from_dict(json.loads(json.dumps(n.to_dict())))
    assert torch.equal(again(torch.from_numpy(x)), out)
    t = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    assert Normalizer("minmax01").fit(x[:, :1])(t).tolist() == [[[[0.0, 1.0]]]]
    assert Normalizer("minmax11").fit(x[:, :1])(t).tolist() == [[[[-1.0, 1.0]]]]
    with pytest.raises(DataError, match="not a normalizer"):
        Normalizer.from_dict({"kind": "mean_std"})


def test_store_errors(tmp_path):
    with pytest.raises(ArtifactError, match="no image store"):
        load_split(tmp_path, "train")
    path, *_ = make_set(tmp_path, dups=0)
    prepare_images(config(path), seed=0, out=tmp_path / "out", progress=False)
    with pytest.raises(ArtifactError, match="no split 'dev'.*train, val, test"):
        load_split(tmp_path / "out", "dev")
    (tmp_path / "out" / "images" / "val.labels.npy").write_bytes(b"broken")
    with pytest.raises(ArtifactError, match="'val' is damaged"):
        load_split(tmp_path / "out", "val")


def test_label_order():
    assert label_order({"10", "9", "2"}, None) == ["2", "9", "10"]
    assert label_order({"b", "a", "10"}, None) == ["10", "a", "b"]
    assert label_order({"x"}, ["y", "x"]) == ["y", "x"]
    assert label_order({"dog", "cat"}, None, ["dog", "cat", "eel"]) == ["dog", "cat", "eel"]


def test_fashion_mnist_sample(shared_data, tmp_path):
    d = shared_data / "fashion_mnist"
    if not d.is_dir():
        pytest.skip("../shared/data/fashion_mnist is not present")
    src = ImageSourceConfig(path=str(d / "train-images-idx3-ubyte.gz"), labels=str(d / "train-labels-idx1-ubyte.gz"))
    data = DataConfig(kind="image", image=ImageConfig(sources=[src], max_images=2000), split=SplitConfig(val=0.1, test=0.1))
    m = prepare_images(data, seed=0, out=tmp_path / "out", progress=False)
    assert m["shape"] == [1, 28, 28] and m["labels"] == [str(i) for i in range(10)]
    assert m["counts"]["read"] == 2000 and m["counts"]["kept"] + m["counts"]["rejected"] == 2000
    assert 0.2 < m["normalize"]["mean"][0] < 0.4 and 0.25 < m["normalize"]["std"][0] < 0.45
    assert load_split(tmp_path / "out", "test").images.shape[1:] == (1, 28, 28)
