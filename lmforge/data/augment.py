"""Seeded text augmentation for the train split: word deletion, swap, insertion, synonym
substitution from a pluggable lexicon, and random cropping of long records."""

from __future__ import annotations

import json
import random
from pathlib import Path

from lmforge.data.config import AugmentConfig
from lmforge.data.text_resources import SYNONYMS_EN
from lmforge.errors import DataError


def load_lexicon(path: str | None) -> dict[str, list[str]]:
    """A ``{word: [synonyms]}`` JSON file, or the small built-in English lexicon."""
    if path is None:
        return SYNONYMS_EN
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise DataError(f"data.augment.lexicon: {path} must hold a JSON object mapping words to lists of synonyms")
    return {k.lower(): [str(s) for s in v] for k, v in data.items()}


class Augmenter:
    def __init__(self, cfg: AugmentConfig, seed: int):
        self.cfg = cfg
        self.seed = seed
        self.lexicon = load_lexicon(cfg.lexicon)

    def augment(self, text: str, key: int, copy: int) -> str:
        """One augmented variant; the same (text, key, copy, seed) always gives the same output."""
        c = self.cfg
        rng = random.Random((self.seed * 1_000_003 + key) * 31 + copy)
        words = text.split()
        if c.crop_words is not None and len(words) > c.crop_words:
            start = rng.randrange(len(words) - c.crop_words + 1)
            words = words[start:start + c.crop_words]
        if c.synonym_prob > 0:
            words = [rng.choice(self.lexicon[w.lower()]) if w.lower() in self.lexicon and rng.random() < c.synonym_prob
                     else w for w in words]
        for _ in range(c.word_insertion):
            candidates = [w for w in words if w.lower() in self.lexicon]
            if not candidates:
                break
            words.insert(rng.randrange(len(words) + 1), rng.choice(self.lexicon[rng.choice(candidates).lower()]))
        if c.word_deletion > 0 and len(words) > 1:
            kept = [w for w in words if rng.random() >= c.word_deletion]
            words = kept or [rng.choice(words)]
        for _ in range(c.word_swap):
            if len(words) < 2:
                break
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        return " ".join(words)
