"""Text cleaning: Unicode repair and normalization, HTML, control characters, whitespace,
and the optional lowercasing, punctuation and stop-word removal."""

from __future__ import annotations

import html
import re
import sys
import unicodedata
from functools import lru_cache
from typing import Optional

from lmforge.data.config import CleanConfig
from lmforge.data.document import Document, StepStats
from lmforge.data.text_resources import STOPWORDS_EN

_HTML_BLOCKS = re.compile(r"<(script|style|noscript)\b[^>]*>.*?</\1\s*>", re.I | re.S)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_HTML_BREAKS = re.compile(r"<\s*(br|/p|/div|/li|/h[1-6]|/tr)\b[^>]*>", re.I)
_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_KEEP_CONTROL = {"\n", "\t"}
# ftfy changes ASCII text only through control characters, carriage returns and HTML entities;
# ASCII text without them is returned unchanged, so ftfy is skipped for it (tested).
_FTFY_ASCII_TRIGGERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f&]")


def ftfy_is_noop(text: str) -> bool:
    return text.isascii() and _FTFY_ASCII_TRIGGERS.search(text) is None


@lru_cache(maxsize=1)
def _control_chars() -> re.Pattern:
    """Characters of categories Cc/Cf except newline, tab and carriage return, as one regex class
    (a regex scans text in C much faster than a dict-based ``str.translate``)."""
    cps = [cp for cp in range(sys.maxunicode + 1)
           if unicodedata.category(chr(cp)) in ("Cc", "Cf") and chr(cp) not in _KEEP_CONTROL and cp != 0x0D]
    ranges, start = [], cps[0]
    for prev, cp in zip(cps, cps[1:] + [-1]):
        if cp != prev + 1:
            ranges.append(re.escape(chr(start)) + ("-" + re.escape(chr(prev)) if prev > start else ""))
            start = cp
    return re.compile("[" + "".join(ranges) + "]")


@lru_cache(maxsize=1)
def _punct_table() -> dict[int, str]:
    return {cp: " " for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)).startswith("P")}


def strip_html(text: str) -> str:
    text = _HTML_BLOCKS.sub(" ", text)
    text = _HTML_COMMENT.sub(" ", text)
    text = _HTML_BREAKS.sub("\n", text)
    text = _HTML_TAG.sub(" ", text)
    return html.unescape(text)


def normalize_whitespace(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


class Cleaner:
    """Applies :class:`CleanConfig` to documents; drops (and counts) those left empty."""

    def __init__(self, cfg: CleanConfig):
        self.cfg = cfg
        self.stats = StepStats("clean")
        self.stopwords = frozenset(w.lower() for w in cfg.stopwords) if cfg.stopwords else STOPWORDS_EN
        if cfg.fix_text:
            import ftfy  # noqa: F401  (fail at construction, not mid-job)

    def clean_text(self, text: str) -> str:
        cfg = self.cfg
        if cfg.fix_text and not ftfy_is_noop(text):
            import ftfy

            fixed = ftfy.fix_text(text, normalization=cfg.unicode_form if cfg.unicode_form != "none" else None)
            if fixed != text:
                self.stats.extra["unicode_repaired"] += 1
            text = fixed
        elif cfg.unicode_form != "none":
            text = unicodedata.normalize(cfg.unicode_form, text)
        if cfg.strip_html and ("<" in text or "&" in text):
            stripped = strip_html(text)
            if stripped != text:
                self.stats.extra["html_stripped"] += 1
            text = stripped
        if cfg.control_chars:
            text = _control_chars().sub("", text)
        if cfg.lowercase:
            text = text.lower()
        if cfg.remove_punctuation:
            text = text.translate(_punct_table())
        if cfg.remove_stopwords:
            text = "\n".join(" ".join(w for w in line.split(" ") if w.lower() not in self.stopwords)
                             for line in text.split("\n"))
        if cfg.whitespace:
            text = normalize_whitespace(text)
        return text

    def __call__(self, doc: Document) -> Optional[Document]:
        doc.text = self.clean_text(doc.text)
        if not doc.text.strip():
            self.stats.drop("empty_after_clean")
            return None
        self.stats.keep()
        return doc
