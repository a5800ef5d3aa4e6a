"""The prepared image store: one uint8 array per split, memory-mapped by the readers.

::

    <data>/images/index.json            {"format": 1, "shape": [C, H, W], "dtype": "uint8",
                                         "labels": [names in id order],
                                         "splits": {split: {"images", "labels", "ids", "rows"}}}
    <data>/images/<split>.images.npy    uint8 (N, C, H, W)  (np.save; read with mmap_mode="r")
    <data>/images/<split>.labels.npy    int64 (N,)          label ids, indexes into "labels"
    <data>/images/<split>.ids.json      [source id of each row]
    <data>/manifest.json                what ``data prepare`` did (see prepare.py)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmforge.errors import ArtifactError, writing

FORMAT = 1
STORE_DIR = "images"


def store_dir(data_dir: Path) -> Path:
    return Path(data_dir) / STORE_DIR


@dataclass
class ImageArrays:
    """One split: ``images`` uint8 (N, C, H, W) (memory-mapped when loaded), ``labels`` int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray
    ids: list[str]
    label_names: list[str]
    shape: tuple[int, int, int]  # (C, H, W)

    def __len__(self) -> int:
        return len(self.labels)


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with writing(path):
        write(tmp)
        os.replace(tmp, path)


def write_split(data_dir: Path, split: str, images: np.ndarray, labels: np.ndarray, ids: list[str]) -> dict:
    """Write one split's three files; returns its entry of the index's ``splits``."""
    if images.dtype != np.uint8 or images.ndim != 4 or not (len(images) == len(labels) == len(ids)):
        raise ValueError(f"write_split: expected uint8 (N, C, H, W) images with N labels and ids; got "
                         f"{images.dtype} {images.shape}, {len(labels)} labels, {len(ids)} ids")
    d = store_dir(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    entry = {"images": f"{split}.images.npy", "labels": f"{split}.labels.npy", "ids": f"{split}.ids.json",
             "rows": int(len(images))}

    def save(arr: np.ndarray):
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.save adds ".npy" to a path that lacks it
                np.save(f, arr)
        return write

    _atomic(d / entry["images"], save(np.ascontiguousarray(images)))
    _atomic(d / entry["labels"], save(np.asarray(labels, dtype=np.int64)))
    _atomic(d / entry["ids"], lambda tmp: tmp.write_text(json.dumps(list(ids))))
    return entry


def write_index(data_dir: Path, shape: tuple[int, ...], label_names: list[str], splits: dict[str, dict]) -> Path:
    """``images/index.json``, written after the splits (a store without it is incomplete)."""
    path = store_dir(data_dir) / "index.json"
    index = {"format": FORMAT, "shape": [int(v) for v in shape], "dtype": "uint8", "labels": list(label_names),
             "splits": splits}
    _atomic(path, lambda tmp: tmp.write_text(json.dumps(index, indent=1)))
    return path


def read_index(data_dir: Path) -> dict:
    path = store_dir(data_dir) / "index.json"
    if not path.is_file():
        raise ArtifactError(f"{path}: no image store here; prepare the data first (lmforge data prepare with "
                            "data.kind: image)")
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable ({exc}); prepare the data again") from None
    if index.get("format") != FORMAT or index.get("dtype") != "uint8":
        raise ArtifactError(f"{path}: image store format {index.get('format')!r}/{index.get('dtype')!r}; "
                            f"this lmforge reads format {FORMAT} uint8")
    return index


def load_split(data_dir: Path, split: str) -> ImageArrays:
    """One split of a prepared image folder; the images are memory-mapped (O(1) random access)."""
    index = read_index(data_dir)
    entry = index["splits"].get(split)
    if entry is None:
        raise ArtifactError(f"{store_dir(data_dir) / 'index.json'}: no split {split!r} "
                            f"(splits: {', '.join(index['splits']) or 'none'})")
    d = store_dir(data_dir)
    try:
        images = np.load(d / entry["images"], mmap_mode="r", allow_pickle=False)
        labels = np.load(d / entry["labels"], allow_pickle=False)
        ids = json.loads((d / entry["ids"]).read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{d}: split {split!r} is damaged or incomplete ({exc}); prepare the data again") from None
    shape = tuple(index["shape"])
    problems = []
    if images.dtype != np.uint8 or tuple(images.shape[1:]) != shape:
        problems.append(f"images are {images.dtype} {tuple(images.shape)}, the index says uint8 (N, {shape})")
    if not (len(images) == len(labels) == len(ids) == entry["rows"]):
        problems.append(f"{len(images)} images, {len(labels)} labels, {len(ids)} ids, the index says {entry['rows']} rows")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(index["labels"])):
        problems.append(f"label ids outside 0..{len(index['labels']) - 1}")
    if problems:
        raise ArtifactError(f"{d}: split {split!r}: " + "; ".join(problems) + "; prepare the data again")
    return ImageArrays(images, labels.astype(np.int64), ids, list(index["labels"]), shape)


def load_manifest(data_dir: Path) -> dict:
    """``manifest.json`` of a prepared data folder."""
    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        raise ArtifactError(f"{path}: not found; prepare the data first (lmforge data prepare)")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable ({exc}); prepare the data again") from None
