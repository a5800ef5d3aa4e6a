"""Quality filters: length, repetition, symbol/alphabetic ratios and Gopher-like heuristics.

Each rule is a small function ``(text) -> reason | None`` (``too_short_chars``,
``duplicate_lines``, ``top_ngram_repetition``, ...); :func:`rules_for` lists the enabled ones in
order and :class:`QualityFilter` runs them in the unit's single fused pass, counting every reason.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Optional

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


class Text:
    """One document's text with the views the rules share, each computed at most once."""

    __slots__ = ("text", "_words", "_lower", "_lens")

    def __init__(self, text: str):
        self.text = text
        self._words = self._lower = self._lens = None

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._words = self.text.split()
        return self._words

    @property
    def lower(self) -> list[str]:
        if self._lower is None:
            self._lower = self.text.lower().split()
        return self._lower

    @property
    def lower_lens(self) -> list[int]:
        if self._lens is None:
            self._lens = [len(w) for w in self.lower]
        return self._lens


Rule = Callable[[Text], Optional[str]]  # a failed rule returns its reason, e.g. "too_short_chars"


def rules_for(c: FilterConfig) -> list[Rule]:
    """The enabled rules in their fixed order (the first failing one names the drop reason).
    Rules after the length checks pass documents without words."""
    rules: list[Rule] = []
    if c.min_chars is not None:
        rules.append(lambda t: "too_short_chars" if len(t.text) < c.min_chars else None)
    if c.max_chars is not None:
        rules.append(lambda t: "too_long_chars" if len(t.text) > c.max_chars else None)
    if c.min_words is not None:
        rules.append(lambda t: "too_short_words" if len(t.words) < c.min_words else None)
    if c.max_words is not None:
        rules.append(lambda t: "too_long_words" if len(t.words) > c.max_words else None)
    if c.max_dup_line_frac is not None:
        def duplicate_lines(t: Text) -> Optional[str]:
            lines = [ln for ln in t.text.split("\n") if ln.strip()]
            bad = len(lines) > 1 and (len(lines) - len(set(lines))) / len(lines) > c.max_dup_line_frac
            return "duplicate_lines" if bad else None
        rules.append(duplicate_lines)
    if c.max_top_ngram_frac is not None:
        rules.append(lambda t: "top_ngram_repetition" if t.words and top_ngram_fraction(
            t.lower, sum(t.lower_lens), 2) > c.max_top_ngram_frac else None)
    if c.max_dup_ngram_frac is not None:
        rules.append(lambda t: "duplicate_ngrams" if t.words and dup_ngram_fraction(
            t.lower, t.lower_lens, sum(t.lower_lens), 5) > c.max_dup_ngram_frac else None)
    if c.max_symbol_ratio is not None:
        def symbol_ratio(t: Text) -> Optional[str]:
            symbols = t.text.count("#") + t.text.count("...") + t.text.count("\u2026")
            return "symbol_ratio" if t.words and symbols / len(t.words) > c.max_symbol_ratio else None
        rules.append(symbol_ratio)
    if c.min_alpha_word_frac is not None:
        def alpha_ratio(t: Text) -> Optional[str]:
            if not t.words:
                return None
            alpha = sum(1 for w in t.words if any(ch.isalpha() for ch in w))
            return "alpha_ratio" if alpha / len(t.words) < c.min_alpha_word_frac else None
        rules.append(alpha_ratio)
    if c.min_mean_word_len is not None or c.max_mean_word_len is not None:
        def mean_word_length(t: Text) -> Optional[str]:
            if not t.words:
                return None
            mean = sum(len(w) for w in t.words) / len(t.words)
            low = c.min_mean_word_len is not None and mean < c.min_mean_word_len
            high = c.max_mean_word_len is not None and mean > c.max_mean_word_len
            return "mean_word_length" if low or high else None
        rules.append(mean_word_length)
    if c.min_stopwords is not None:
        rules.append(lambda t: "too_few_stopwords" if t.words and len(
            GOPHER_STOPWORDS.intersection(t.lower)) < c.min_stopwords else None)
    return rules


class QualityFilter:
    """Applies the configured rules to each document, counting every drop by its reason."""

    def __init__(self, cfg: FilterConfig):
        self.cfg = cfg
        self.rules = rules_for(cfg)
        self.stats = StepStats("filter")

    def reason(self, text: str) -> Optional[str]:
        view = Text(text)
        for rule in self.rules:
            why = rule(view)
            if why is not None:
                return why
        return None

    def __call__(self, doc: Document) -> Optional[Document]:
        why = self.reason(doc.text)
        if why is not None:
            self.stats.drop(why)
            return None
        self.stats.keep()
        return doc
