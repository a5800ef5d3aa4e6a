"""Log-mel spectrograms with torch ops (no audio library): STFT power → triangular mel filters
(HTK mel scale) → log."""

from __future__ import annotations

import numpy as np
import torch


def mel_filters(n_mels: int, n_fft: int, sample_rate: int) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters evenly spaced on the mel scale up to Nyquist."""
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10 ** (m / 2595.0) - 1.0)  # noqa: E731
    edges = hz(np.linspace(mel(0.0), mel(sample_rate / 2), n_mels + 2))
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    fb = np.zeros((n_mels, len(freqs)), dtype=np.float32)
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        fb[m] = np.clip(np.minimum(up, down), 0, None)
    return torch.from_numpy(fb)


def log_mel(waves: np.ndarray, sample_rate: int, n_fft: int, hop: int, n_mels: int, chunk: int = 256) -> np.ndarray:
    """float32 (N, 1, n_mels, frames) log-mel of float waveforms (N, samples), ``chunk`` clips at a
    time (the complex spectrogram of a whole dataset would not fit in memory)."""
    fb, window = mel_filters(n_mels, n_fft, sample_rate), torch.hann_window(n_fft)
    out = []
    for lo in range(0, len(waves), chunk):
        x = torch.from_numpy(np.ascontiguousarray(waves[lo:lo + chunk], dtype=np.float32))
        power = torch.stft(x, n_fft, hop_length=hop, window=window, return_complex=True, center=True).abs() ** 2
        out.append(torch.log(torch.einsum("mf,nft->nmt", fb, power) + 1e-6).unsqueeze(1).numpy())
    return np.concatenate(out).astype(np.float32)
