"""Schema of ``data.audio``: sources (a folder with one subfolder per class of WAV files), the
sample rate and channels a file may have, the fixed clip length, the log-mel features and the
train-time augmentation. The split (``data.split.val/test``, stratified by label) and the declared
label set (``data.labels``) are shared with the other kinds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class AudioSourceConfig:
    """One input: a folder with one subfolder per class of ``.wav`` files (16-bit, 8-bit or 32-bit PCM)."""

    path: str = field(default="", metadata={"help": "folder with one subfolder per class of .wav files"})

    def validate(self):
        if not self.path:
            yield "path", "give the folder of class subfolders of .wav files"


@dataclass
class AudioFeaturesConfig:
    """Log-mel spectrogram: the model's input (1 channel × n_mels × frames)."""

    n_fft: int = field(default=400, metadata={"min": 16, "help": "STFT window (samples; 25 ms at 16 kHz)"})
    hop: int = field(default=160, metadata={"min": 1, "help": "STFT hop (samples; 10 ms at 16 kHz)"})
    n_mels: int = field(default=40, metadata={"min": 4, "max": 256})


@dataclass
class AudioAugmentConfig:
    """Train-time augmentation of the spectrograms, on the fly and seeded by step (never of val/test)."""

    enabled: bool = False
    noise_std: float = field(default=0.1, metadata={"min": 0.0, "help": "gaussian noise added to the normalized log-mel"})
    gain_db: float = field(default=6.0, metadata={"min": 0.0, "help": "random gain in ±dB (a shift of the log-mel)"})
    shift_frames: int = field(default=8, metadata={"min": 0, "help": "random time shift of up to this many frames (the clip is cropped at one end, padded with silence at the other)"})


@dataclass
class AudioConfig:
    """``data.audio``: used when ``data.kind: audio``."""

    sources: list[AudioSourceConfig] = field(default_factory=list)
    sample_rate: int = field(default=16000, metadata={"min": 1000, "help": "rate every clip is brought to"})
    resample: bool = field(default=True, metadata={"help": "resample clips of another rate (linear interpolation); false: reject them (reason sample_rate)"})
    max_channels: int = field(default=2, metadata={"min": 1, "help": "clips with more channels are rejected (reason channels); the rest are mixed to mono"})
    seconds: float = field(default=1.0, metadata={"min": 0.01, "help": "clip length: longer clips are cut, shorter ones padded with silence"})
    features: AudioFeaturesConfig = field(default_factory=AudioFeaturesConfig)
    augment: AudioAugmentConfig = field(default_factory=AudioAugmentConfig)
    max_files: Optional[int] = field(default=None, metadata={"min": 1, "help": "read at most this many files (in sorted order)"})
