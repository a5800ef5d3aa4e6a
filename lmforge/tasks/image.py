"""Image classification on a prepared image folder (``data.kind: image``).

Rows are uint8 (C, H, W) images; a batch becomes float pixels in [0, 1], is augmented (training
only, seeded per step, :class:`lmforge.data.images.augment.Augmenter`) and normalized with the
statistics fit on the train split (stored in the manifest and in every saved model, so
evaluation, prediction and serving normalize identically).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from lmforge.errors import DataError
from lmforge.tasks.arrays import ArraySet, prepared_manifest, require_path


class ImageTask:
    name = "image"
    archs = ("cnn", "vit")
    default_metric = "accuracy"
    metrics = frozenset({"accuracy", "f1_macro", "f1_micro", "f1_weighted", "roc_auc"})

    def __init__(self):
        self._steps: dict[str, tuple] = {}  # (normalize, augment) records → (Normalizer, Augmenter or None)

    def load(self, data_dir: Path, split: str) -> ArraySet:
        from lmforge.data.images.store import load_split

        a = load_split(Path(data_dir), split)
        images = a.images if a.images.nbytes > (2 << 30) else np.ascontiguousarray(a.images)  # small sets: in RAM
        return ArraySet({"x": images}, np.asarray(a.labels, dtype=np.int64), list(a.ids))

    def meta(self, data_dir: Path, train: ArraySet) -> dict:
        man = prepared_manifest(data_dir, "image")
        return {"kind": "image", "task": "classification", "labels": list(man["labels"]),
                "in_shape": list(man["shape"]), "num_outputs": len(man["labels"]), "normalize": man["normalize"],
                "augment": man.get("augment", {})}

    def build_model(self, model_cfg, meta: dict) -> torch.nn.Module:
        from lmforge.models.vision import image_model_from_record

        return image_model_from_record(model_cfg, meta)

    def tensors(self, batch: ArraySet, meta: dict, device: torch.device,
                augment: Optional[torch.Generator] = None) -> dict[str, torch.Tensor]:
        normalizer, augmenter = self._prepared(meta)
        x = torch.from_numpy(np.asarray(batch.inputs["x"])).to(device).float().div_(255.0)  # (B, C, H, W) in [0, 1]
        if augment is not None and augmenter is not None:
            x = augmenter(x, augment)
        return {"x": normalizer(x)}

    def forward(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(inputs["x"])

    def read_file(self, path: str, folder: Path, meta: dict, need_label: bool, strict: bool = False) -> ArraySet:
        """Images of a raw file or folder, in the model's shape; rejected ones are reported, not used.
        Prediction also takes what users have: one image file, a glob, a flat folder of images, or
        ``-``: image paths on standard input, one per line (``find shots -name '*.png' | lmforge predict
        MODEL --file -``)."""
        from lmforge.data.images.config import ImageConfig, ImageSourceConfig
        from lmforge.data.images.read import IMAGE_EXTENSIONS, Rejected, is_glob, read_source

        C, H, W = meta["in_shape"]
        loose = path == "-" or is_glob(path) or Path(path).suffix.lower() in IMAGE_EXTENSIONS or (
            Path(path).is_dir() and not need_label)
        if not need_label and loose:
            return self._loose_images(path, C, H, W)
        require_path(path)
        src = ImageSourceConfig(path=str(path))
        if Path(path).is_dir() and not any(p.is_dir() for p in Path(path).iterdir()):
            src = ImageSourceConfig(path=str(path), format="folder")
        images, labels, ids, rejected = [], [], [], []
        for rec in read_source(src, ImageConfig(sources=[src], size=[H, W], channels=C)):
            if isinstance(rec, Rejected):
                rejected.append(rec)
                continue
            images.append(rec.pixels)
            labels.append(rec.label)
            ids.append(rec.id)
        if rejected:
            print(f"[evaluate] {len(rejected)} image(s) of {path} not used: "
                  + "; ".join(f"{r.id}: {r.reason}" for r in rejected[:5]), flush=True)
        if not images:
            raise DataError(f"{path}: no readable images")
        y = None
        if need_label:
            # a label is one of the model's names, or (IDX/npy/npz files hold integers) a class index
            index = {n: i for i, n in enumerate(meta["labels"])}
            index.update({str(i): i for i in range(len(meta["labels"])) if str(i) not in index})
            unknown = sorted({str(v) for v in labels if str(v) not in index})
            if unknown:
                raise DataError(f"{path}: labels the model does not know: {unknown[:10]} (it knows {meta['labels']}, "
                                f"or their indices 0..{len(meta['labels']) - 1})")
            y = np.asarray([index[str(v)] for v in labels], dtype=np.int64)
        return ArraySet({"x": np.stack(images)}, y, ids)

    def _loose_images(self, path: str, C: int, H: int, W: int) -> ArraySet:
        """Unlabeled image files (a file, a glob, a folder and its subfolders, or paths on stdin) at the
        model's size."""
        import sys

        from lmforge.data.images.read import decode_image, image_files, is_glob

        if path == "-":
            files = [Path(line.strip()) for line in sys.stdin if line.strip()]
        else:
            if not is_glob(path):
                require_path(path)
            files = image_files(path)
        images, ids, bad = [], [], []
        for f in files:
            try:
                images.append(decode_image(f, C, (H, W)))
                ids.append(str(f))
            except Exception as exc:  # Pillow raises many kinds on hostile files; each is one skipped image
                bad.append(f"{f}: {type(exc).__name__}")
        if bad:
            print(f"[predict] {len(bad)} file(s) of {path} are not readable images, not used: " + "; ".join(bad[:5]),
                  flush=True)
        if not images:
            raise DataError(f"{'standard input' if path == '-' else path}: no readable images (PNG, JPEG, BMP or GIF)")
        return ArraySet({"x": np.stack(images)}, None, ids)

    def _prepared(self, meta: dict) -> tuple:
        """The Normalizer and Augmenter a model's record describes, built once per record."""
        key = json.dumps([meta["normalize"], meta.get("augment", {})], sort_keys=True)
        if key not in self._steps:
            from lmforge.config.schema import build
            from lmforge.data.images.augment import Augmenter
            from lmforge.data.images.config import ImageAugmentConfig
            from lmforge.data.images.normalize import Normalizer

            aug = meta.get("augment", {})
            self._steps[key] = (Normalizer.from_dict(meta["normalize"]),
                                Augmenter(build(ImageAugmentConfig, aug)) if aug.get("enabled") else None)
        return self._steps[key]
