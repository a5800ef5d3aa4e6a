"""Audio classification on a prepared audio folder (``data.kind: audio``).

Rows are float32 log-mel spectrograms (1, n_mels, frames); a batch is normalized with the train
split's statistics (kept in the manifest and in every saved model) and, in training only,
augmented on the fly (noise, gain, time shift; seeded per step). The model is the image CNN on the
spectrogram."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from lmforge.errors import DataError
from lmforge.tasks.arrays import ArraySet, prepared_manifest, require_path


class AudioTask:
    name = "audio"
    archs = ("cnn",)
    default_metric = "accuracy"
    metrics = frozenset({"accuracy", "f1_macro", "f1_micro", "f1_weighted", "roc_auc"})

    def load(self, data_dir: Path, split: str) -> ArraySet:
        from lmforge.data.audio.prepare import load_split

        x, y, ids = load_split(Path(data_dir), split)
        return ArraySet({"x": x}, y, ids)

    def meta(self, data_dir: Path, train: ArraySet) -> dict:
        man = prepared_manifest(data_dir, "audio")
        return {"kind": "audio", "task": "classification", "labels": list(man["labels"]), "in_shape": list(man["shape"]),
                "num_outputs": len(man["labels"]), "normalize": man["normalize"], "augment": man.get("augment", {}),
                "sample_rate": man["sample_rate"], "seconds": man["seconds"], "features": man["features"],
                "audio": man["config"]}

    def build_model(self, model_cfg, meta: dict) -> torch.nn.Module:
        from lmforge.models.vision import image_model_from_record

        return image_model_from_record(model_cfg, meta)

    def tensors(self, batch: ArraySet, meta: dict, device: torch.device,
                augment: Optional[torch.Generator] = None) -> dict[str, torch.Tensor]:
        x = torch.from_numpy(np.asarray(batch.inputs["x"], dtype=np.float32)).to(device)
        x = (x - meta["normalize"]["mean"]) / meta["normalize"]["std"]
        aug = meta.get("augment") or {}
        if augment is not None and aug.get("enabled"):
            x = _augment(x, aug, augment)
        return {"x": x}

    def forward(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(inputs["x"])

    def read_file(self, path: str, folder: Path, meta: dict, need_label: bool, strict: bool = False) -> ArraySet:
        """WAV files (a file, a flat folder, or class subfolders) → the model's features; unusable files reported."""
        from lmforge.config.schema import build
        from lmforge.data.audio.config import AudioConfig
        from lmforge.data.audio.features import log_mel
        from lmforge.data.audio.read import Rejected, read_clips

        require_path(path)
        cfg = build(AudioConfig, {k: v for k, v in meta["audio"].items() if k not in ("sources", "max_files")})
        clips, rejected = [], []
        for rec in read_clips(Path(path), cfg):
            (rejected if isinstance(rec, Rejected) else clips).append(rec)
        for r in rejected[:5]:
            print(f"[evaluate] {r.id}: {r.reason} ({r.detail}) — not used", flush=True)
        if len(rejected) > 5:
            print(f"[evaluate] ... and {len(rejected) - 5} more file(s) not used", flush=True)
        if not clips:
            raise DataError(f"{path}: no readable .wav clip")
        f = meta["features"]
        x = log_mel(np.stack([c.samples for c in clips]), cfg.sample_rate, f["n_fft"], f["hop"], f["n_mels"])
        y = None
        if need_label:
            unknown = sorted({str(c.label) for c in clips if c.label not in meta["labels"]})
            if unknown:
                raise DataError(f"{path}: labels the model does not know: {unknown[:10]} (it knows {meta['labels']})")
            y = np.asarray([meta["labels"].index(c.label) for c in clips], dtype=np.int64)
        return ArraySet({"x": x}, y, [c.id for c in clips])


def _augment(x: torch.Tensor, aug: dict, gen: torch.Generator) -> torch.Tensor:
    """Noise, gain (a shift of the log power) and a time shift padded with the quietest value."""
    n = x.size(0)
    gain = (torch.rand(n, 1, 1, 1, generator=gen, device=x.device) * 2 - 1) * aug["gain_db"] * np.log(10) / 10
    x = x + gain + torch.randn(x.shape, generator=gen, device=x.device) * aug["noise_std"]
    k = aug["shift_frames"]
    if k:
        shifts = torch.randint(-k, k + 1, (n,), generator=gen, device=x.device).tolist()
        floor = x.amin()
        out = torch.full_like(x, float(floor))
        T = x.size(-1)
        for i, s in enumerate(shifts):
            if s >= 0:
                out[i, ..., s:] = x[i, ..., :T - s]
            else:
                out[i, ..., :T + s] = x[i, ..., -s:]
        x = out
    return x
