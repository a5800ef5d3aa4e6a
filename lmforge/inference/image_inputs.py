"""What an image model takes outside training — in an ONNX graph, in a server request, in a smoke
request — and how raw inputs become it (the kind registry's ``inputs`` entry for images).

The graph takes raw uint8 pixels (B, C, H, W) at the model's size; the normalization fit on the
train split is inside it. A request's images are decoded and resized (bilinear) to that size and
channel count with the code ``lmforge predict`` uses on files.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from lmforge.errors import InputError
from lmforge.inference.input_graph import Normalized, base64_bytes
from lmforge.tasks.arrays import ArraySet


class ImageInputs:
    field = "images"  # what a /v1/classify request lists
    uploads = True  # multipart file uploads are accepted

    def __init__(self, folder: Path, meta: dict):
        self.meta = meta
        self.shape = tuple(int(v) for v in meta["in_shape"])  # (C, H, W)

    # -- the ONNX graph ----------------------------------------------------------------------------
    def graph(self, model: nn.Module) -> nn.Module:
        n = self.meta["normalize"]  # uint8 pixels in, the train split's normalization inside
        return Normalized(model, torch.tensor(n["mean"]).view(1, -1, 1, 1), torch.tensor(n["std"]).view(1, -1, 1, 1),
                          divisor=255.0).eval()

    def signature(self) -> dict[str, str]:
        c, h, w = self.shape
        return {"pixels": f"uint8 [batch, {c}, {h}, {w}]"}

    def output(self) -> str:
        return "logits"

    def feeds(self, batch: ArraySet) -> dict[str, np.ndarray]:
        return {"pixels": np.ascontiguousarray(batch.inputs["x"], dtype=np.uint8)}

    def synthetic(self, rng: np.random.Generator, n: int) -> ArraySet:
        return ArraySet({"x": rng.integers(0, 256, (n, *self.shape), dtype=np.uint8)}, None)

    def pipeline_tag(self) -> str:
        return "image-classification"

    def card_lines(self) -> list[str]:
        c, h, w = self.shape
        return [f"Feed raw pixels (uint8, {c} channel(s)) resized to {h}x{w}; the normalization is in the graph."]

    # -- requests ----------------------------------------------------------------------------------
    def info(self) -> dict:
        c, h, w = self.shape
        return {"input": {"channels": c, "height": h, "width": w, "resized": "bilinear, to height x width"}}

    def item(self, raw) -> np.ndarray:
        """One image from a request — base64 text (a ``data:`` URL is accepted) or uploaded bytes — as
        the model's uint8 (C, H, W); a UsageError says why it cannot be read."""
        from lmforge.data.images.read import decode_image

        data = base64_bytes(raw) if isinstance(raw, str) else raw
        try:
            return decode_image(io.BytesIO(data), self.shape[0], self.shape[1:])
        except Exception as exc:  # Pillow raises several types for bytes that are not an image
            raise InputError(f"not a readable PNG/JPEG/BMP/GIF image ({type(exc).__name__})") from None

    def batch(self, items: list[np.ndarray]) -> tuple[ArraySet, list[list[dict]]]:
        return ArraySet({"x": np.stack(items)}, None), [[] for _ in items]

    @staticmethod
    def smoke_payload(data_dir: Path) -> Optional[dict]:
        """The first prepared test (else val, train) image as a base64 PNG request."""
        from PIL import Image

        for split in ("test", "val", "train"):
            path = Path(data_dir) / "images" / f"{split}.images.npy"
            if path.is_file():
                img = np.load(path, mmap_mode="r")[0]
                pixels = np.ascontiguousarray(img[0] if img.shape[0] == 1 else img[:3].transpose(1, 2, 0))
                buf = io.BytesIO()
                Image.fromarray(pixels).save(buf, "PNG")
                return {"images": [base64.b64encode(buf.getvalue()).decode()]}
        return None
