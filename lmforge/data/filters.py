"""Quality filters: length, repetition, symbol/alphabetic ratios and Gopher-like heuristics.

Each rule returns the reason a document fails (``too_short_chars``, ``duplicate_lines``,
``top_ngram_repetition``, ...) or None; :class:`QualityFilter` counts every reason.
"""

from __future__ import annotations

from collections import Counter
from typing import Optional

from lmforge.data.config import FilterConfig
from lmforge.data.document import Document, StepStats
from lmforge.data.text_resources import GOPHER_STOPWORDS


def top_ngram_fraction(words: list[str], total: int, n: int) -> float:
    """Fraction of word characters covered by the most frequent word n-gram (0 if none repeats)."""
    if len(words) < n or total == 0:
        return 0.0
    gram, count = Counter(zip(*(words[i:] for i in range(n)))).most_common(1)[0]
    return 0.0 if count < 2 else count * sum(len(w) for w in gram) / total


def dup_ngram_fraction(words: list[str], lens: list[int], total: int, n: int) -> float:
    """Fraction of word characters inside word n-grams that occur more than once."""
    if len(words) < n or total == 0:
        return 0.0
    grams = list(zip(*(words[i:] for i in range(n))))
    counts = Counter(grams)
    if len(counts) == len(grams):  # nothing repeats: the common case, no marking needed
        return 0.0
    covered = bytearray(len(words))
    for i, g in enumerate(grams):
        if counts[g] > 1:
            covered[i:i + n] = b"\x01" * n
    return sum(length for length, c in zip(lens, covered) if c) / total


class QualityFilter:
    def __init__(self, cfg: FilterConfig):
        self.cfg = cfg
        self.stats = StepStats("filter")

    def reason(self, text: str) -> Optional[str]:
        c = self.cfg
        n_chars = len(text)
        if c.min_chars is not None and n_chars < c.min_chars:
            return "too_short_chars"
        if c.max_chars is not None and n_chars > c.max_chars:
            return "too_long_chars"
        words = text.split()
        n_words = len(words)
        if c.min_words is not None and n_words < c.min_words:
            return "too_short_words"
        if c.max_words is not None and n_words > c.max_words:
            return "too_long_words"
        if c.max_dup_line_frac is not None:
            lines = [ln for ln in text.split("\n") if ln.strip()]
            if len(lines) > 1 and (len(lines) - len(set(lines))) / len(lines) > c.max_dup_line_frac:
                return "duplicate_lines"
        if n_words == 0:
            return None
        lower = None
        if c.max_top_ngram_frac is not None or c.max_dup_ngram_frac is not None or c.min_stopwords is not None:
            lower = text.lower().split()
        if c.max_top_ngram_frac is not None or c.max_dup_ngram_frac is not None:
            lens = [len(w) for w in lower]
            total = sum(lens)
            if c.max_top_ngram_frac is not None and top_ngram_fraction(lower, total, 2) > c.max_top_ngram_frac:
                return "top_ngram_repetition"
            if c.max_dup_ngram_frac is not None and dup_ngram_fraction(lower, lens, total, 5) > c.max_dup_ngram_frac:
                return "duplicate_ngrams"
        if c.max_symbol_ratio is not None:
            symbols = text.count("#") + text.count("...") + text.count("\u2026")
            if symbols / n_words > c.max_symbol_ratio:
                return "symbol_ratio"
        if c.min_alpha_word_frac is not None:
            alpha = sum(1 for w in words if any(ch.isalpha() for ch in w))
            if alpha / n_words < c.min_alpha_word_frac:
                return "alpha_ratio"
        if c.min_mean_word_len is not None or c.max_mean_word_len is not None:
            mean = sum(len(w) for w in words) / n_words
            if c.min_mean_word_len is not None and mean < c.min_mean_word_len:
                return "mean_word_length"
            if c.max_mean_word_len is not None and mean > c.max_mean_word_len:
                return "mean_word_length"
        if c.min_stopwords is not None and len(GOPHER_STOPWORDS.intersection(lower)) < c.min_stopwords:
            return "too_few_stopwords"
        return None

    def __call__(self, doc: Document) -> Optional[Document]:
        why = self.reason(doc.text)
        if why is not None:
            self.stats.drop(why)
            return None
        self.stats.keep()
        return doc
