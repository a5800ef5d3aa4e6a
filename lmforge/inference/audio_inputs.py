"""What an audio model takes outside training — in an ONNX graph, in a server request, in a smoke
request — and how raw WAV bytes become it (the kind registry's ``inputs`` entry for audio).

The graph takes the log-mel spectrogram (float32 (B, 1, n_mels, frames)); the normalization fit on
the train split is inside it. A request's WAV files are decoded, mixed to mono, resampled (when the
model's config allows it), cut or padded to the model's length and turned into that spectrogram by
the code ``data prepare`` and ``lmforge predict`` use (:mod:`lmforge.data.audio`);
``lmforge_task.json`` records the sample rate, length and feature settings.
"""

from __future__ import annotations

import base64
import io
import wave
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from lmforge.errors import InputError
from lmforge.inference.input_graph import Normalized, base64_bytes
from lmforge.tasks.arrays import ArraySet


class AudioInputs:
    field = "audio"  # what a /v1/classify request lists: WAV files
    uploads = True

    def __init__(self, folder: Path, meta: dict):
        from lmforge.config.schema import build
        from lmforge.data.audio.config import AudioConfig

        self.meta = meta
        self.shape = tuple(int(v) for v in meta["in_shape"])  # (1, n_mels, frames)
        self.cfg = build(AudioConfig, {k: v for k, v in meta["audio"].items() if k not in ("sources", "max_files")})

    # -- the ONNX graph ----------------------------------------------------------------------------
    def graph(self, model: nn.Module) -> nn.Module:
        n = self.meta["normalize"]  # the spectrogram in, the train split's normalization inside
        return Normalized(model, torch.tensor(float(n["mean"])), torch.tensor(float(n["std"]))).eval()

    def signature(self) -> dict[str, str]:
        return {"spectrogram": "float32 [batch, " + ", ".join(str(v) for v in self.shape) + "]"}

    def output(self) -> str:
        return "logits"

    def feeds(self, batch: ArraySet) -> dict[str, np.ndarray]:
        return {"spectrogram": np.ascontiguousarray(batch.inputs["x"], dtype=np.float32)}

    def synthetic(self, rng: np.random.Generator, n: int) -> ArraySet:
        norm = self.meta["normalize"]
        x = rng.normal(norm["mean"], norm["std"], (n, *self.shape)).astype(np.float32)
        return ArraySet({"x": x}, None)

    def pipeline_tag(self) -> str:
        return "audio-classification"

    def card_lines(self) -> list[str]:
        f = self.meta["features"]
        return [f"Feed the log-mel spectrogram of {self.cfg.seconds} s of mono audio at {self.cfg.sample_rate} Hz "
                f"(n_fft {f['n_fft']}, hop {f['hop']}, {f['n_mels']} mel bands; lmforge.data.audio.features.log_mel); "
                "the normalization is in the graph. `lmforge serve` on this folder takes WAV files."]

    # -- requests ----------------------------------------------------------------------------------
    def info(self) -> dict:
        return {"input": {"sample_rate": self.cfg.sample_rate, "seconds": self.cfg.seconds,
                          "resample": self.cfg.resample, "max_channels": self.cfg.max_channels,
                          "format": "WAV, 8/16/32-bit PCM"}}

    def item(self, raw) -> np.ndarray:
        """One WAV file from a request (base64 text or uploaded bytes) as the model's mono waveform."""
        from lmforge.data.audio.read import Rejected, decode

        data = base64_bytes(raw) if isinstance(raw, str) else raw
        try:
            got = decode(io.BytesIO(data), self.cfg, name="request")
        except Exception as exc:  # a stream the wave module trips over in another way
            raise InputError(f"not a readable WAV file ({type(exc).__name__})") from None
        if isinstance(got, Rejected):
            raise InputError(f"{got.reason}: {got.detail}")
        return got

    def batch(self, items: list[np.ndarray]) -> tuple[ArraySet, list[list[dict]]]:
        from lmforge.data.audio.features import log_mel

        f = self.meta["features"]
        x = log_mel(np.stack(items), self.cfg.sample_rate, f["n_fft"], f["hop"], f["n_mels"])
        return ArraySet({"x": x}, None), [[] for _ in items]

    @staticmethod
    def smoke_payload(data_dir: Path) -> Optional[dict]:
        """A synthesized half-second 440 Hz tone as a WAV file at the prepared data's sample rate."""
        import json

        rate = int(json.loads((Path(data_dir) / "manifest.json").read_text())["sample_rate"])
        t = np.arange(rate // 2) / rate
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes((0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes())
        return {"audio": [base64.b64encode(buf.getvalue()).decode()]}
