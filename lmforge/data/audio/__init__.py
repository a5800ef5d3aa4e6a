"""Audio as a data kind (``data.kind: audio``): WAV files read with the standard library, resampled,
turned into log-mel spectrograms with torch ops, split, and trained on by a small CNN."""
