"""WAV files → mono float waveforms at the configured rate, or a rejection with its reason.

Reasons: ``undecodable`` (not a WAV file the standard library's ``wave`` reads, or a sample width
it cannot map), ``empty`` (no samples), ``sample_rate`` (another rate with ``resample: false``),
``channels`` (more than ``max_channels``)."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Union

import numpy as np

from lmforge.data.audio.config import AudioConfig


@dataclass
class Clip:
    id: str
    label: Optional[str]
    samples: np.ndarray  # float32 (n,), mono, in [-1, 1], at the configured rate


@dataclass
class Rejected:
    id: str
    reason: str
    detail: str


def decode(path: Union[Path, BinaryIO], cfg: AudioConfig, name: Optional[str] = None) -> Union[np.ndarray, Rejected]:
    """One file's (or an open binary stream's, e.g. a request's bytes) waveform at ``cfg.sample_rate``,
    fixed to ``cfg.seconds``; or why not (``name`` is the rejection's id; default the path)."""
    src = str(path) if isinstance(path, (str, Path)) else path
    path = name or (str(path) if isinstance(path, (str, Path)) else "request")
    try:
        with wave.open(src, "rb") as w:
            channels, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError, OSError) as exc:
        return Rejected(str(path), "undecodable", str(exc)[:200])
    if n == 0 or not raw:
        return Rejected(str(path), "empty", "no samples")
    if channels > cfg.max_channels:
        return Rejected(str(path), "channels", f"{channels} channels; data.audio.max_channels is {cfg.max_channels}")
    if rate != cfg.sample_rate and not cfg.resample:
        return Rejected(str(path), "sample_rate", f"{rate} Hz; data.audio.sample_rate is {cfg.sample_rate} "
                        "(set data.audio.resample: true to convert)")
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}.get(width)
    if dtype is None:
        return Rejected(str(path), "undecodable", f"{8 * width}-bit samples are not supported (8, 16 or 32-bit PCM)")
    x = np.frombuffer(raw[: len(raw) - len(raw) % (width * channels)], dtype=dtype).astype(np.float32)
    x = (x - 128.0) / 128.0 if width == 1 else x / float(np.iinfo(dtype).max)
    x = x.reshape(-1, channels).mean(axis=1)
    if rate != cfg.sample_rate:  # linear interpolation onto the target grid
        t_new = np.arange(int(round(len(x) * cfg.sample_rate / rate))) / cfg.sample_rate
        x = np.interp(t_new, np.arange(len(x)) / rate, x).astype(np.float32)
    want = int(round(cfg.seconds * cfg.sample_rate))
    return np.pad(x[:want], (0, max(0, want - len(x)))).astype(np.float32)


def wav_files(path: Path) -> list[tuple[Path, Optional[str]]]:
    """(file, label) of a folder of class subfolders — label None for files directly in the folder
    (prediction on a flat folder) — or of a single file."""
    path = Path(path)
    if path.is_file():
        return [(path, None)]
    out = [(p, None) for p in sorted(path.glob("*.wav"))]
    for sub in sorted(d for d in path.iterdir() if d.is_dir()):
        out += [(p, sub.name) for p in sorted(sub.glob("*.wav"))]
    return out


def read_clips(path: Path, cfg: AudioConfig, limit: Optional[int] = None) -> Iterator[Union[Clip, Rejected]]:
    for i, (p, label) in enumerate(wav_files(path)):
        if limit is not None and i >= limit:
            return
        got = decode(p, cfg)
        yield got if isinstance(got, Rejected) else Clip(str(p), label, got)
