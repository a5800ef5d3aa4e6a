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

from lmforge.tasks.arrays import ArraySet, prepared_manifest


def normalize(x01: torch.Tensor, norm: dict) -> torch.Tensor:
    """Pixels in [0, 1] (B, C, H, W) → model inputs, by the manifest's ``normalize`` record."""
    kind = norm.get("kind", "mean_std")
    if kind == "minmax01":
        return x01
    if kind == "minmax11":
        return x01 * 2 - 1
    mean = torch.tensor(norm["mean"], dtype=x01.dtype, device=x01.device)[None, :, None, None]
    std = torch.tensor(norm["std"], dtype=x01.dtype, device=x01.device)[None, :, None, None]
    return (x01 - mean) / std


class ImageTask:
    name = "image"
    archs = ("cnn", "vit")
    default_metric = "accuracy"
    metrics = frozenset({"accuracy", "f1_macro", "f1_micro", "f1_weighted", "roc_auc"})

    def __init__(self):
        self._augmenters: dict[str, object] = {}

    def load(self, data_dir: Path, split: str) -> ArraySet:
        from lmforge.data.images.store import load_split

        a = load_split(Path(data_dir), split)
        images = a.images if a.images.nbytes > (2 << 30) else np.ascontiguousarray(a.images)  # small sets: in RAM
        return ArraySet({"x": images}, np.asarray(a.labels, dtype=np.int64), list(a.ids))

    def meta(self, data_dir: Path, train: ArraySet) -> dict:
        man = prepared_manifest(data_dir, "image")
        return {"kind": "image", "task": "classification", "labels": list(man["labels"]),
                "in_shape": list(man["shape"]), "num_outputs": len(man["labels"]), "normalize": man["normalize"], "augment": man.get("augment", {})}

    def build_model(self, model_cfg, meta: dict) -> torch.nn.Module:
        from lmforge.models.vision import build_image_model

        return build_image_model(model_cfg, tuple(meta["in_shape"]), len(meta["labels"]))

    def tensors(self, batch: ArraySet, meta: dict, device: torch.device,
                augment: Optional[torch.Generator] = None) -> dict[str, torch.Tensor]:
        x = torch.from_numpy(np.asarray(batch.inputs["x"])).to(device).float().div_(255.0)  # (B, C, H, W) in [0, 1]
        if augment is not None and meta.get("augment", {}).get("enabled"):
            x = self._augmenter(meta["augment"])(x, augment)
        return {"x": normalize(x, meta["normalize"])}

    def forward(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(inputs["x"])

    def _augmenter(self, cfg: dict):
        key = json.dumps(cfg, sort_keys=True)
        if key not in self._augmenters:
            from lmforge.config.schema import build
            from lmforge.data.images.augment import Augmenter
            from lmforge.data.images.config import ImageAugmentConfig

            self._augmenters[key] = Augmenter(build(ImageAugmentConfig, cfg))
        return self._augmenters[key]
